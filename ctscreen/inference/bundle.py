"""A model bundle: one segmentation -> classification pair with everything needed to screen a study
the way it was validated (DESIGN: one MLflow model version = one bundle).

    bundle.json            names, profiles, sizes, preprocessing, threshold, metrics, provenance
    segmentation.pt/.onnx  lesion segmentation (state dict; ONNX for Triton / ONNX Runtime)
    classification.pt/.onnx
    lungs/                 the lung-region network (lung_region.pt/.onnx, spec.json), when the pair
                           was trained on its lungs; without it the classical extraction finds them
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from ctscreen import __version__
from ctscreen.errors import InputError
from ctscreen.home import home
from ctscreen.imaging.preprocess import PreprocessingParameters
from ctscreen.inference.backends import load_network
from ctscreen.inference.lung_region import ONNX_FILE, SPEC_FILE, WEIGHTS_FILE, LungRegionNetwork, load_lung_model, load_lung_region, lung_model_digest
from ctscreen.inference.signature import SIGNATURE
from ctscreen.models.export import export_onnx

MANIFEST = "bundle.json"
LUNGS = "lungs"


@dataclass
class ModelBundle:
    root: Path
    segmentation: dict  # name, profile, patch_zyx
    classification: dict  # name, profile, input_zyx
    preprocessing: PreprocessingParameters
    threshold: float
    metrics: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.segmentation['name']}+{self.classification['name']}"

    @property
    def lungs(self) -> Path | None:
        """The lung-region model's folder; None where the classical extraction finds the lungs."""
        return self.root / LUNGS if self.preprocessing.lung_model else None

    def lung_region(self, backend: str = "torch") -> LungRegionNetwork | None:
        """The lung-region step on ``backend`` (None: the classical extraction, inside preprocessing)."""
        return None if self.lungs is None else load_lung_region(self.lungs, backend)

    def networks(self, device: torch.device | str = "cpu") -> tuple[nn.Module, nn.Module]:
        return self.predictors("torch", device)

    def predictors(self, backend: str = "torch", device: torch.device | str = "cpu") -> tuple:
        """(segmenter, classifier) on ``backend``: modules for ``torch``, ONNX Runtime sessions for ``onnx``."""
        return tuple(load_network(spec["name"], spec["profile"], self.root / f"{role}.pt", self.root / f"{role}.onnx", backend, device)
                     for role, spec in (("segmentation", self.segmentation), ("classification", self.classification)))


def save_bundle(out_dir: str | Path, segmenter: nn.Module, segmentation: dict, classifier: nn.Module, classification: dict,
                preprocessing: PreprocessingParameters, threshold: float, metrics: dict, provenance: dict | None = None,
                lungs: str | Path | None = None) -> ModelBundle:
    """``lungs``: the lung-region model folder the pair was trained on, which ``preprocessing.lung_model`` names."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _save_lungs(lungs, preprocessing, out_dir / LUNGS)
    segmenter, classifier = segmenter.cpu().eval(), classifier.cpu().eval()
    torch.save(segmenter.state_dict(), out_dir / "segmentation.pt")
    torch.save(classifier.state_dict(), out_dir / "classification.pt")
    export_onnx(segmenter, torch.zeros(1, 1, *segmentation["patch_zyx"]), out_dir / "segmentation.onnx")
    export_onnx(classifier, torch.zeros(1, 2, *classification["input_zyx"]), out_dir / "classification.onnx")
    bundle = ModelBundle(
        out_dir, dict(segmentation), dict(classification), preprocessing, float(threshold), metrics,
        {"code_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **(provenance or {})},
    )
    document = {
        "segmentation": bundle.segmentation,
        "classification": bundle.classification,
        "preprocessing": preprocessing.to_dict(),
        "threshold": bundle.threshold,
        "metrics": metrics,
        "provenance": bundle.provenance,
    }
    (out_dir / MANIFEST).write_text(json.dumps(document, indent=2, default=str))
    return bundle


def _save_lungs(source: str | Path | None, preprocessing: PreprocessingParameters, folder: Path) -> None:
    if (source is None) != (preprocessing.lung_model is None):
        raise ValueError("a bundle's lung-region model and its preprocessing's lung_model go together: give both or neither")
    if source is None:
        return
    source = Path(source)
    if lung_model_digest(source) != preprocessing.lung_model:
        raise ValueError(f"{source / WEIGHTS_FILE} is not the lung-region model {preprocessing.lung_model[:12]} the preprocessing names")
    model, spec = load_lung_model(source)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / WEIGHTS_FILE, folder / WEIGHTS_FILE)
    (folder / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2))
    export_onnx(model, torch.zeros(1, 1, *spec.window_zyx), folder / ONNX_FILE)


def bundle_digest(path: str | Path) -> str:
    """SHA-256 over a bundle's files (names and bytes), its signature left out: the same bundle,
    wherever it lies and whenever it was signed."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.name != SIGNATURE):
        digest.update(file.relative_to(root).as_posix().encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def load_bundle(path: str | Path) -> ModelBundle:
    root = Path(path)
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise InputError(root, f"not a model bundle: no {MANIFEST}")
    try:
        document = json.loads(manifest.read_text())
        bundle = ModelBundle(
            root,
            document["segmentation"],
            document["classification"],
            PreprocessingParameters.from_dict(document["preprocessing"]),
            float(document["threshold"]),
            document.get("metrics", {}),
            document.get("provenance", {}),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(manifest, f"invalid bundle description ({type(exc).__name__}: {exc})") from None
    for file in ("segmentation.pt", "classification.pt"):
        if not (root / file).is_file():
            raise InputError(root / file, "missing from the bundle")
    if bundle.lungs is not None:
        weights = bundle.lungs / WEIGHTS_FILE
        if not weights.is_file():
            raise InputError(weights, "missing from the bundle: its preprocessing finds the lungs with this network")
        if lung_model_digest(bundle.lungs) != bundle.preprocessing.lung_model:
            raise InputError(weights, f"is not the lung-region model {bundle.preprocessing.lung_model[:12]} the bundle's preprocessing names")
    return bundle


def _pointer() -> Path:
    return home() / "default-bundle"


def set_default_bundle(path: str | Path) -> Path:
    """Remember ``path`` as the platform's current default model (what ``ctscreen screen`` uses)."""
    pointer = _pointer()
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(str(Path(path).resolve()))
    return pointer


def default_bundle() -> ModelBundle:
    pointer = _pointer()
    if not pointer.is_file():
        raise InputError(pointer, "no default model yet: run `make demo` to train one, or pass --bundle DIR")
    return load_bundle(pointer.read_text().strip())
