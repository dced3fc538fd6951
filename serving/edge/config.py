"""The edge agent's configuration file (YAML): where central's channel is, what the node trusts,
where its Triton and its state are, how often it polls."""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from pathlib import Path

from serving.settings import load_settings


@dataclass(frozen=True)
class EdgeConfig:
    channel_url: str  # the release store's root: metadata/ and targets/ below it (http://... or a path)
    trusted_root: Path  # the store's root metadata shipped with the node (1.root.json)
    bundle_public_key: Path  # the key bundles are signed with at registration
    state_dir: Path  # downloads, the node's Triton repository, state, refused releases
    triton_url: str = "127.0.0.1:8000"  # the node's Triton, HTTP
    channel: str = "stable"
    poll_interval_s: float = 60.0
    jitter: float = 0.1  # each wait is the interval times 1 +- this, so many nodes do not poll in step
    max_backoff_s: float = 900.0  # the longest wait while central is unreachable
    metrics_address: str = "127.0.0.1:9309"  # /metrics, /healthz, /readyz (port 0: any free one)
    python_env: str = sys.prefix  # the environment Triton's Python stub runs the models in

    def __post_init__(self):
        if self.poll_interval_s <= 0 or self.max_backoff_s < self.poll_interval_s or not 0 <= self.jitter < 1:
            raise ValueError("poll_interval_s must be positive, max_backoff_s at least the interval, jitter in [0, 1)")

    @property
    def metadata_url(self) -> str:
        return f"{self.channel_url.rstrip('/')}/metadata/"

    @property
    def targets_url(self) -> str:
        return f"{self.channel_url.rstrip('/')}/targets/"

    @property
    def repository(self) -> Path:
        """The node's Triton model repository: what its Triton is started over."""
        return self.state_dir / "repository"

    def to_dict(self) -> dict:
        return {f.name: str(getattr(self, f.name)) if isinstance(getattr(self, f.name), Path) else getattr(self, f.name)
                for f in fields(self)}


def load_edge_config(path: str | Path) -> EdgeConfig:
    return load_settings(path, EdgeConfig)
