"""The Triton model configurations of a ctscreen release, as data.

Three or four models per release, all carrying the release's number as their Triton version:

- ``ctscreen-lung-region`` (where the bundle has a lung-region network), ``ctscreen-segmentation`` and
  ``ctscreen-classification``: the bundle's ONNX graphs, one window or one classifier input per
  request, batched dynamically across concurrent screenings. The lung region is found before the
  case is cropped, so the client's preprocessing asks the lung-region model window by window;
- ``ctscreen-screening``: the entry point, a Python-backend BLS model. One request carries one
  preprocessed case (image, lung mask); it runs the sliding window over the segmentation model, builds
  the classifier's input from the map and asks the classification model, and returns the lesion
  probability map and the COVID-19 probability. BLS rather than an ensemble because a sliding window
  is a loop over a data-dependent number of windows with Gaussian blending, which an ensemble's fixed
  graph of steps cannot express.

A configuration is a dict in the JSON form of Triton's ``ModelConfig``: rendered as ``config.pbtxt`` in
a repository, sent as is with an explicit ``load`` request (which is how the edge agent narrows the
version policy to the versions it keeps).
"""

from __future__ import annotations

import json

LUNG_REGION, SEGMENTATION, CLASSIFICATION, SCREENING = ("ctscreen-lung-region", "ctscreen-segmentation", "ctscreen-classification",
                                                       "ctscreen-screening")
MODELS = (LUNG_REGION, SEGMENTATION, CLASSIFICATION, SCREENING)  # networks first, the entry point (which calls them) last
# Each network's graph in the bundle: what the release serves as that model's ``model.onnx``.
NETWORK_FILES = {LUNG_REGION: "lungs/lung_region.onnx", SEGMENTATION: "segmentation.onnx", CLASSIFICATION: "classification.onnx"}
TARGETS = ("cpu", "gpu")
MAX_BATCH = 4
QUEUE_DELAY_US = 2000  # how long a window waits for company from other screenings


def _tensor(name: str, data_type: str, dims: list[int]) -> dict:
    return {"name": name, "data_type": data_type, "dims": dims}


def network_config(name: str, channels: int, outputs: int, target: str, python_env: str | None, versions: list[int]) -> dict:
    """One of the networks: (B, C, D, H, W) in, its logits out, batched dynamically.

    ``cpu``: the ONNX graph under ONNX Runtime inside the Python backend (the only backend of the
    ``tritonserver`` that runs here); ``gpu``: Triton's native ``onnxruntime`` backend on a GPU.
    """
    spatial = [-1, -1, -1]
    config = {
        "name": name,
        "max_batch_size": MAX_BATCH,
        "input": [_tensor("input", "TYPE_FP32", [channels, *spatial])],
        "output": [_tensor("output", "TYPE_FP32", [outputs, *spatial] if outputs > 1 else [outputs])],
        "dynamic_batching": {"max_queue_delay_microseconds": QUEUE_DELAY_US},
        "version_policy": {"specific": {"versions": versions}},
    }
    if target == "gpu":
        return {**config, "backend": "onnxruntime", "instance_group": [{"kind": "KIND_GPU", "count": 1}]}
    return {**config, "backend": "python", "instance_group": [{"kind": "KIND_CPU", "count": 1}], **_environment(python_env)}


def screening_config(target: str, python_env: str | None, versions: list[int]) -> dict:
    """The entry point: one preprocessed case per request, on the CPU whatever the target (it only orchestrates)."""
    return {
        "name": SCREENING,
        "backend": "python",
        "max_batch_size": 0,
        "input": [_tensor("image", "TYPE_FP32", [-1, -1, -1]), _tensor("lung_mask", "TYPE_UINT8", [-1, -1, -1])],
        "output": [_tensor("lesion_probability", "TYPE_FP32", [-1, -1, -1]), _tensor("covid_probability", "TYPE_FP32", [1])],
        "instance_group": [{"kind": "KIND_CPU", "count": 2 if target == "gpu" else 1}],
        "version_policy": {"specific": {"versions": versions}},
        **_environment(python_env),
    }


def release_configs(target: str, python_env: str | None, versions: list[int], lung_region: bool = False) -> dict[str, dict]:
    """The release's models (``lung_region``: whether it serves a lung-region network) in ``MODELS`` order."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    return {
        **({LUNG_REGION: network_config(LUNG_REGION, 1, 2, target, python_env, versions)} if lung_region else {}),
        SEGMENTATION: network_config(SEGMENTATION, 1, 2, target, python_env, versions),
        CLASSIFICATION: network_config(CLASSIFICATION, 2, 1, target, python_env, versions),
        SCREENING: screening_config(target, python_env, versions),
    }


def with_versions(config: dict, versions: list[int]) -> dict:
    """The same configuration serving exactly ``versions``."""
    return {**config, "version_policy": {"specific": {"versions": sorted(set(versions))}}}


def _environment(python_env: str | None) -> dict:
    """The Python backend's stub runs in this environment (a virtualenv with ctscreen installed);
    without it, the server's own Python (the ctscreen image's)."""
    if not python_env:
        return {}
    return {"parameters": {"EXECUTION_ENV_PATH": {"string_value": python_env}}}


def to_pbtxt(config: dict) -> str:
    """A ModelConfig dict in protobuf text format, as ``config.pbtxt`` holds it."""
    return "\n".join(_fields(config, 0)) + "\n"


def _fields(message: dict, depth: int) -> list[str]:
    pad = "  " * depth
    lines = []
    for key, value in message.items():
        if key == "parameters":  # a protobuf map: one entry per key
            for name, entry in value.items():
                lines += [f"{pad}parameters {{", f'{pad}  key: "{name}"', f"{pad}  value {{"]
                lines += _fields(entry, depth + 2) + [f"{pad}  }}", f"{pad}}}"]
            continue
        for item in value if isinstance(value, list) and (not value or isinstance(value[0], dict)) else [value]:
            if isinstance(item, dict):
                lines += [f"{pad}{key} {{", *_fields(item, depth + 1), f"{pad}}}"]
            else:
                lines.append(f"{pad}{key}: {_scalar(key, item)}")
    return lines


def _scalar(key: str, value) -> str:
    if isinstance(value, list):
        return "[ " + ", ".join(_scalar(key, v) for v in value) + " ]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and (key in ("data_type", "kind") or value.startswith("TYPE_")):
        return value  # enums stand bare
    return json.dumps(value)
