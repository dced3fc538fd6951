"""Training configuration: ``params.yaml`` (shared with ``dvc.yaml``), every value overridable as
``--set section.key=value`` on the command line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ctscreen.errors import InputError
from ctscreen.imaging.preprocess import TARGET_SPACING_ZYX, PreprocessingParameters
from ctscreen.inference.lung_region import LungRegionNetwork, load_lung_region, lung_model_digest


SCHEDULES = ("constant", "cosine")


@dataclass
class OptimiserConfig:
    lr: float = 1e-4  # the paper: Adam, initial learning rate 1e-4
    weight_decay: float = 5e-4  # the paper: decay 5e-4
    epochs: int = 20
    batch_size: int = 2  # samples (patches, for segmentation) per step
    data_workers: int = 1  # DataLoader worker processes reading and augmenting cases beside the training step
    schedule: str = "constant"  # the learning rate over the epochs: "constant" (the paper) or "cosine" (annealed to zero by the last epoch)
    patience: int | None = None  # stop once this many epochs have passed without a better validation metric (None: run every epoch)
    median_stop_from: int | None = None  # from this epoch on, end a candidate trailing the earlier ones (the median stopping rule; None: off)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name in ("patience", "median_stop_from"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a whole number of epochs of at least 1, or null; got {value!r}")


@dataclass
class SegmentationConfig:
    models: list[str] = field(default_factory=lambda: ["fcn8s", "unet", "vnet", "unetpp"])
    profile: str = "small"
    patch_zyx: list[int] | None = None  # None: the profile's recommended patch
    samples_per_case: int = 4
    positive_fraction: float = 0.5  # share of patches centred on lesion voxels (class balance)
    deep_supervision_weights: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25, 0.125])
    validate_every: int = 1  # epochs between whole-volume validations (the last epoch is always validated)
    optimiser: OptimiserConfig = field(default_factory=OptimiserConfig)


@dataclass
class ClassificationConfig:
    models: list[str] = field(default_factory=lambda: ["resnet50", "dpn92", "inception_v3", "attention_resnet50"])
    profile: str = "small"
    input_zyx: list[int] | None = None  # None: the profile's recommended input size
    optimiser: OptimiserConfig = field(default_factory=lambda: OptimiserConfig(batch_size=4))


@dataclass
class EvaluationConfig:
    target_sensitivity: float = 0.95  # the operating point is chosen on validation data at this sensitivity
    bootstrap_resamples: int = 2000


@dataclass
class TrainingConfig:
    seed: int = 0
    window: str = "lesion"
    spacing_zyx: list[float] = field(default_factory=lambda: list(TARGET_SPACING_ZYX))  # working grid, mm
    lung_model: str | None = None  # a trained lung-region model's folder (`ctscreen train lungs`); None: the classical extraction
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    classification: ClassificationConfig = field(default_factory=ClassificationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def preprocessing(self) -> PreprocessingParameters:
        """The one place the training configuration decides the preprocessing every step uses."""
        digest = None if self.lung_model is None else lung_model_digest(self.lung_model)
        return PreprocessingParameters(spacing_zyx=tuple(float(s) for s in self.spacing_zyx), window=self.window, lung_model=digest)

    def lung_region(self) -> LungRegionNetwork | None:
        """The lung-region network ``preprocessing`` names (None: the classical extraction)."""
        return None if self.lung_model is None else load_lung_region(self.lung_model)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainingConfig:
    """Defaults, then the ``train`` section of ``path`` (if given), then ``key.sub=value`` overrides."""
    return load_section(TrainingConfig, "train", path, overrides)


def load_section(cls, section: str, path: str | Path | None = None, overrides: list[str] = ()):
    """A dataclass from the defaults, the ``section`` of the YAML file ``path``, then the overrides."""
    data: dict = {}
    source = Path(path) if path else None
    if source is not None:
        try:
            document = yaml.safe_load(source.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(source, f"cannot read the configuration ({exc})") from None
        data = document.get(section, {}) if isinstance(document, dict) else {}
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise InputError(source or "--set", f"override {override!r} is not of the form section.key=value")
        target = data
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = yaml.safe_load(value)
    return _build(cls, data, source, "")


def from_settings(cls, data: dict):
    """A settings dataclass from a mapping, as ``to_dict`` or ``dataclasses.asdict`` wrote it (a
    pipeline passes its configuration by value, so a cached step is keyed by the settings themselves)."""
    return _build(cls, data, None, "")


def _build(cls, data: dict, source, prefix: str):
    if not isinstance(data, dict):
        raise InputError(source or "--set", f"{prefix.rstrip('.') or 'configuration'} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(source or "--set", f"unknown setting(s) {', '.join(prefix + u for u in unknown)}; known: {', '.join(prefix + k for k in fields)}")
    values = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            values[name] = _build(type(default), value, source, f"{prefix}{name}.")
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
        elif default is not None and not isinstance(value, type(default)):
            raise InputError(source or "--set", f"{prefix}{name} must be {type(default).__name__}, got {value!r}")
        else:
            values[name] = value
    try:
        return cls(**values)
    except ValueError as exc:
        raise InputError(source or "--set", f"{prefix}{exc}") from None  # the setting named by its full key
