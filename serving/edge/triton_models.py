"""The node's Triton, told exactly which release versions to serve (explicit model control).

A load request carries the model's configuration with a version policy naming the versions to
keep; Triton loads the new ones beside those already serving and drops the rest, so the networks
go first and the entry model, which calls them, last."""

from __future__ import annotations

import json
from pathlib import Path

from serving.triton.config import MODELS, to_pbtxt, with_versions


def configuration(repository: Path, model: str, versions: list[int], python_env: str) -> dict:
    """The newest version's configuration, serving ``versions``, its Python stub in ``python_env``."""
    config = with_versions(json.loads((repository / model / str(max(versions)) / "config.json").read_text()), versions)
    if config.get("backend") == "python":
        config["parameters"] = {"EXECUTION_ENV_PATH": {"string_value": python_env}}
    return config


def release_models(repository: Path, version: int) -> list[str]:
    """The models release ``version`` installed in ``repository`` (the lung-region network only where its bundle has one)."""
    return [model for model in MODELS if (repository / model / str(version)).is_dir()]


def serve_versions(client, repository: Path, versions: list[int], python_env: str) -> None:
    """Make Triton serve exactly ``versions`` of every model (none: unload them all); a model none of
    them has is unloaded. The repository's ``config.pbtxt`` files are kept the same, so a restarted
    server loaded by hand serves the same. Loads come first, the networks before the entry point that
    calls them; then the unloads, the entry point before the networks."""
    kept = {model: [v for v in versions if model in release_models(repository, v)] for model in MODELS}
    for model in MODELS:
        if kept[model]:
            config = configuration(repository, model, kept[model], python_env)
            partial = repository / model / ".config.pbtxt.partial"
            partial.write_text(to_pbtxt(config))
            partial.replace(repository / model / "config.pbtxt")
            client.load_model(model, config=json.dumps(config))
    for model in reversed(MODELS):
        if not kept[model] and (repository / model).is_dir():
            client.unload_model(model)


def serves(client, repository: Path, version: int) -> bool:
    """Whether every model of release ``version`` is loaded and ready."""
    models = release_models(repository, version)
    try:
        return bool(models) and all(client.is_model_ready(model, str(version)) for model in models)
    except Exception:  # the transport's and tritonclient's errors alike: not serving either way
        return False


def model_states(client) -> dict[str, dict[str, str]]:
    """model -> version -> state (READY, UNAVAILABLE: reason), from the repository index."""
    states: dict[str, dict[str, str]] = {}
    for entry in client.get_model_repository_index():
        if entry.get("version"):
            state = entry.get("state", "")
            states.setdefault(entry["name"], {})[entry["version"]] = state + (f": {entry['reason']}" if entry.get("reason") else "")
    return states

