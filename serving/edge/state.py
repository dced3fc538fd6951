"""What the agent knows about its node, kept on disk and replaced whole (a new file, synced, then
renamed), so an agent killed at any point restarts from a state it once wrote completely."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE = "state.json"


@dataclass
class EdgeState:
    serving: int | None = None  # the release in service: what screening asks Triton for
    previous: int | None = None  # the one before it, still loaded: rollback is instant
    held_back: int | None = None  # rolled back from on site: not taken again until the channel moves on
    channel_version: int | None = None  # what the channel named at the last successful poll
    last_poll: float | None = None  # when central last answered (epoch seconds)
    last_success: dict | None = None  # {"time", "version"} of the last update put in service
    last_failure: dict | None = None  # {"time", "version", "reason", "kind"}
    refused: dict[str, str] = field(default_factory=dict)  # version -> why it will not be served

    @classmethod
    def load(cls, state_dir: Path) -> "EdgeState":
        path = Path(state_dir) / STATE
        return cls(**json.loads(path.read_text())) if path.exists() else cls()

    def save(self, state_dir: Path) -> None:
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        partial = state_dir / f".{STATE}.partial"
        with open(partial, "w") as out:
            json.dump(asdict(self), out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(state_dir / STATE)
        directory = os.open(state_dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def loaded(self) -> list[int]:
        """The versions Triton keeps loaded: the one in service and the one before it."""
        return sorted({v for v in (self.serving, self.previous) if v is not None})


def serving_version(state_dir: str | Path) -> int | None:
    """The release in service on this node, for whoever screens (read fresh each time: it changes)."""
    return EdgeState.load(Path(state_dir)).serving
