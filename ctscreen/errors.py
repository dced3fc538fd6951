"""Errors a user can act on: each names the file and the problem, never a library's traceback."""

from __future__ import annotations

from pathlib import Path


class CTScreenError(Exception):
    """Base class for every error ctscreen reports to a user."""


class InputError(CTScreenError):
    """Input that cannot be used as given: an unreadable, inconsistent or unsafe file or folder."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class OutputError(CTScreenError):
    """An output location that would lose or overwrite something already stored."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
