"""Models looked up by name, so a pipeline can train "every segmentation x every classification model"
from a list of names. Each architecture lives in its own module and registers itself here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

TASKS = ("segmentation", "classification")


@dataclass(frozen=True)
class ModelSpec:
    """An architecture and its size profiles: ``paper`` (full width and depth) and smaller ones for CPUs."""

    name: str
    task: str
    builder: Callable[..., nn.Module]
    profiles: dict[str, dict] = field(default_factory=dict)
    description: str = ""

    def build(self, profile: str = "small", **overrides) -> nn.Module:
        if profile not in self.profiles:
            raise ValueError(f"model {self.name!r} has no profile {profile!r}; choose from {', '.join(self.profiles)}")
        return self.builder(**{**self.profiles[profile], **overrides})


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, task: str, profiles: dict[str, dict], description: str = ""):
    """Decorator for a builder ``f(**profile_kwargs) -> nn.Module``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, task, builder, dict(profiles), description or (builder.__doc__ or "").strip().split("\n")[0])
        return builder

    return decorate


def model_spec(name: str) -> ModelSpec:
    _load_architectures()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_model(name: str, profile: str = "small", **overrides) -> nn.Module:
    return model_spec(name).build(profile, **overrides)


def list_models(task: str | None = None) -> list[str]:
    _load_architectures()
    return sorted(n for n, s in _REGISTRY.items() if task is None or s.task == task)


def _load_architectures() -> None:
    # Importing the package imports every architecture module, each of which registers itself.
    import ctscreen.models  # noqa: F401
