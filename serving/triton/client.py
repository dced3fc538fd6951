"""The pair through a Triton server: one request per preprocessed case to the release's entry model,
over HTTP or gRPC (``tritonclient``), and, where the release has a lung-region network, the study's
lung windows to that model first (preprocessing needs the lungs before it crops). Where no server
answers, the same repository version runs in this process under ONNX Runtime instead — said in the
log and in a metric, never silently."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from prometheus_client import Counter

from ctscreen.inference.predictor import PairOutput
from serving.triton.config import LUNG_REGION, SCREENING

PROTOCOLS = ("http", "grpc")
log = logging.getLogger(__name__)
FALLBACKS = Counter("ctscreen_serving_fallback", "Screenings served in-process by ONNX Runtime because Triton was unavailable",
                    ["reason"])


class TritonPair:
    """``PairPredictor`` over Triton. ``version``: the release version to ask (None: the newest loaded);
    ``bundle``: the release's bundle, whose lung-region network (if any) then runs on the server too."""

    def __init__(self, url: str, protocol: str = "http", version: int | None = None, model: str = SCREENING, timeout_s: float = 600.0,
                 bundle=None):
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
        if protocol == "grpc":
            import tritonclient.grpc as triton
            self.client = triton.InferenceServerClient(url)
        else:
            import tritonclient.http as triton
            self.client = triton.InferenceServerClient(url, network_timeout=timeout_s, connection_timeout=timeout_s)
        self.triton, self.protocol, self.model, self.url = triton, protocol, model, url
        self.version = version
        self.served_by = {"backend": "triton", "protocol": protocol, "url": url, "model": model, "version": version}
        self.lung_region = None
        if bundle is not None and bundle.lungs is not None:
            from ctscreen.inference.lung_region import LungRegionNetwork, read_lung_spec

            self.lung_region = LungRegionNetwork(self.network(LUNG_REGION, version), read_lung_spec(bundle.lungs), bundle.preprocessing.lung_model)

    def infer_network(self, model: str, batch: np.ndarray, version: int | None = None) -> np.ndarray:
        """One of the release's networks on a batch (B, C, D, H, W): its output."""
        inputs = [self.triton.InferInput("input", list(batch.shape), "FP32")]
        inputs[0].set_data_from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        result = self.client.infer(model, inputs, model_version="" if version is None else str(version),
                                   outputs=[self.triton.InferRequestedOutput("output")])
        return result.as_numpy("output")

    def network(self, model: str, version: int | None = None):
        """One of the release's networks as a predictor over CPU tensors (a batch of windows per request)."""
        import torch

        return lambda x: torch.from_numpy(self.infer_network(model, x.numpy(), version).copy())

    def __call__(self, image: np.ndarray, lung_mask: np.ndarray, version: int | None = None) -> PairOutput:
        inputs = [self.triton.InferInput("image", list(image.shape), "FP32"), self.triton.InferInput("lung_mask", list(lung_mask.shape), "UINT8")]
        inputs[0].set_data_from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        inputs[1].set_data_from_numpy(np.ascontiguousarray(lung_mask, dtype=np.uint8))
        outputs = [self.triton.InferRequestedOutput(name) for name in ("lesion_probability", "covid_probability")]
        chosen = version if version is not None else self.version
        start = time.perf_counter()
        result = self.client.infer(self.model, inputs, model_version="" if chosen is None else str(chosen), outputs=outputs)
        return PairOutput(result.as_numpy("lesion_probability"), float(result.as_numpy("covid_probability")[0]),
                          {"triton": round(time.perf_counter() - start, 3)})

    def ready(self, version: int | None = None) -> bool:
        models = [self.model] + ([LUNG_REGION] if self.lung_region is not None else [])
        try:
            return all(self.client.is_model_ready(model, "" if version is None else str(version)) for model in models)
        except Exception:  # tritonclient raises its own and the transport's errors alike: not ready either way
            return False


def repository_pair(repository: str | Path, version: int):
    """The repository's release ``version`` in this process: the bundle it ships under ONNX Runtime,
    the same graphs the Triton models run (a ``LocalPair``: torch is imported only here)."""
    from ctscreen.inference.screen import LocalPair
    from serving.triton.repository import release_bundle

    pair = LocalPair(release_bundle(repository, version), "onnx")
    pair.served_by = {**pair.served_by, "backend": "onnx-in-process", "repository": str(repository), "version": version}
    return pair


def serving_pair(url: str | None, repository: str | Path, version: int, protocol: str = "http"):
    """Triton at ``url`` when it serves ``version``, else the same version in-process (logged, counted)."""
    from serving.triton.repository import release_bundle

    if url:
        pair = TritonPair(url, protocol, version, bundle=release_bundle(repository, version))
        if pair.ready(version):
            return pair
        reason = f"Triton at {url} does not serve {SCREENING} version {version}"
    else:
        reason = "no Triton server configured"
    log.warning("%s: screening in-process with ONNX Runtime over %s instead", reason, repository)
    FALLBACKS.labels(reason="unavailable" if url else "not-configured").inc()
    return repository_pair(repository, version)
