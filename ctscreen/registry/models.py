"""The model registry in MLflow: one registered model, one version per bundle, and the aliases that
say which version is what — ``challenger`` (the latest retrained candidate) and ``champion`` (what
sites should run). Promotion and rollback only move aliases; versions are never changed or removed.

Each promotion records the champion it replaced as the new champion's ``previous_champion`` tag,
so a rollback always knows where to go back to.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException

from ctscreen.errors import CTScreenError
from ctscreen.evaluation.evaluator import headline
from ctscreen.inference.bundle import ModelBundle, load_bundle

MODEL_NAME = "ctscreen-screening"
CHAMPION, CHALLENGER = "champion", "challenger"
BUNDLE_ARTIFACT = "bundle"
FIGURES = "figures"  # tag prefix: figures.<test set>.<metric> and figures.<test set>.site.<site>.<metric>
SITE_METRICS = ("cases", "auc", "sensitivity", "specificity")


def figure_tags(reports: dict[str, dict]) -> dict[str, str]:
    """A version's figures on every test set (the frozen test set, held-out sites), overall and per
    site, as registry tags: an external site's performance is visible before anyone releases it."""
    tags = {}
    for test_set, report in reports.items():
        tags.update({f"{FIGURES}.{test_set}.{metric}": f"{value:.6g}" for metric, value in headline(report).items()})
        for site, figures in report.get("by_site", {}).items():
            tags.update({f"{FIGURES}.{test_set}.site.{site}.{metric}": f"{figures[metric]:.6g}" for metric in SITE_METRICS
                         if figures.get(metric) is not None})
    return tags


class RegistryError(CTScreenError):
    """A registry request that cannot be done as asked (no such version, no champion to roll back)."""


@dataclass(frozen=True)
class RegisteredVersion:
    version: str
    aliases: tuple[str, ...]
    tags: dict
    run_id: str
    source: str

    def to_dict(self) -> dict:
        return {"version": self.version, "aliases": list(self.aliases), "run_id": self.run_id, "tags": self.tags}

    def figures(self) -> dict[str, dict]:
        """The figures ``figure_tags`` kept, back as {test set: {metric: value, "by_site": {site: {metric: value}}}}."""
        found: dict[str, dict] = {}
        for key, value in self.tags.items():
            prefix, _, rest = key.partition(".")
            if prefix != FIGURES:
                continue
            test_set, _, metric = rest.partition(".")
            entry = found.setdefault(test_set, {"by_site": {}})
            if metric.startswith("site."):
                site, _, metric = metric[len("site."):].rpartition(".")
                entry["by_site"].setdefault(site, {})[metric] = float(value)
            else:
                entry[metric] = float(value)
        return found


class ModelRegistry:
    def __init__(self, tracking_uri: str, name: str = MODEL_NAME):
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        self.name = name

    def register(self, run_id: str, tags: dict[str, str]) -> RegisteredVersion:
        """The bundle logged under ``run_id`` (artifact ``bundle/``) as a new version."""
        try:
            self.client.create_registered_model(self.name, description="ctscreen segmentation -> classification screening bundles")
        except MlflowException as error:  # there already, or created by a release running beside this one
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        created = self.client.create_model_version(self.name, f"runs:/{run_id}/{BUNDLE_ARTIFACT}", run_id=run_id,
                                                   tags={k: str(v) for k, v in tags.items()})
        return self.get(str(created.version))

    def release_candidate(self, run_id: str, tags: dict[str, str], promote: bool) -> RegisteredVersion:
        """Register the run's bundle and move ``challenger`` (and ``champion`` when ``promote``) to it
        as one step: if any part fails, the new version is removed and ``challenger`` restored.

        A bundle already registered (same ``bundle_sha256`` tag: a rerun on unchanged data served from
        cache) is not registered twice; its version is returned and no alias moves.
        """
        digest = tags.get("bundle_sha256")
        known = next((v for v in self.versions() if digest and v.tags.get("bundle_sha256") == digest), None)
        if known is not None:
            return known
        previous = self.alias(CHALLENGER)
        created = self.register(run_id, tags)
        try:
            self.set_challenger(created.version)
            if promote:
                self.promote(created.version)  # moves champion last: a failure before leaves it in place
        except Exception:
            self.client.delete_model_version(self.name, created.version)
            if previous is not None:
                self.client.set_registered_model_alias(self.name, CHALLENGER, previous.version)
            raise
        return self.get(created.version)

    def versions(self) -> list[RegisteredVersion]:
        found = self.client.search_model_versions(f"name = '{self.name}'")  # its results carry no aliases
        return [self.get(v) for v in sorted((str(v.version) for v in found), key=int)]

    def get(self, version: str) -> RegisteredVersion:
        try:
            return self._version(self.client.get_model_version(self.name, str(version)))
        except MlflowException:
            raise RegistryError(f"{self.name} has no version {version}") from None

    def alias(self, alias: str) -> RegisteredVersion | None:
        try:
            return self._version(self.client.get_model_version_by_alias(self.name, alias))
        except MlflowException:
            return None

    def set_challenger(self, version: str) -> None:
        self.client.set_registered_model_alias(self.name, CHALLENGER, str(self.get(version).version))

    def promote(self, version: str) -> RegisteredVersion:
        """Make ``version`` the champion, remembering the one it replaces."""
        chosen = self.get(version)
        current = self.alias(CHAMPION)
        if current is not None and current.version == chosen.version:
            return chosen
        if current is not None:
            self.client.set_model_version_tag(self.name, chosen.version, "previous_champion", current.version)
        self.client.set_registered_model_alias(self.name, CHAMPION, chosen.version)
        return self.get(chosen.version)

    def rollback(self) -> RegisteredVersion:
        """Give ``champion`` back to the version it replaced."""
        current = self.alias(CHAMPION)
        if current is None:
            raise RegistryError(f"{self.name} has no champion to roll back")
        previous = current.tags.get("previous_champion")
        if not previous:
            raise RegistryError(f"{self.name} version {current.version} is the first champion: there is nothing to roll back to")
        self.client.set_registered_model_alias(self.name, CHAMPION, previous)
        return self.get(previous)

    def download(self, version: str, out: str | Path | None = None) -> ModelBundle:
        """The bundle of ``version`` as files on disk, ready for ``screen``."""
        chosen = self.get(version)
        target = Path(out) if out else Path(tempfile.mkdtemp(prefix=f"ctscreen-v{chosen.version}-"))
        target.mkdir(parents=True, exist_ok=True)
        return load_bundle(download_artifacts(artifact_uri=chosen.source, dst_path=str(target), tracking_uri=self.tracking_uri))

    def _version(self, found) -> RegisteredVersion:
        return RegisteredVersion(str(found.version), tuple(sorted(found.aliases or ())), dict(found.tags or {}), found.run_id, found.source)
