"""The central dataset as a git + DVC repository: an append-only case store whose versions are git
revisions, so every retraining run names exactly the data it saw.

Layout of the repository::

    cases/<case_id>/...    the case files (tracked by DVC as one directory, pushed to the remote)
    cases.dvc              DVC's record of cases/ (its md5 is the data's content hash)
    manifest.csv           the dataset manifest, paths relative to the repository (git)
    split.json             case_id -> train / validation / test; the test set is frozen (git)
    dataset.yaml           the dataset's settings: the fractions of the first split, which sized the frozen test set (git)

Cases are never modified or removed once added (a case_id that arrives again with other content is
rejected), so the manifest and split at any revision, read against today's ``cases/``, are exactly
that revision's dataset. One lock serialises writers, so concurrent pipelines cannot interleave.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from ctscreen.errors import CTScreenError, InputError
from ctscreen.locking import exclusive
from ctscreen.manifest import PATH_COLUMNS, content_digest, read_manifest, write_manifest
from ctscreen.training.split import FRACTIONS, check_fractions, extend_split

LOCK = ".ctscreen.lock"
SETTINGS = "dataset.yaml"
COMMITTER = ["-c", "user.name=ctscreen", "-c", "user.email=ctscreen@localhost"]


class DatasetError(CTScreenError):
    """A git or DVC command on the dataset repository failed."""


class DatasetRepository:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def create(cls, root: str | Path, remote: str, split_fractions: tuple[float, float, float] = FRACTIONS) -> "DatasetRepository":
        """A new empty dataset at ``root`` whose data is pushed to the DVC remote ``remote``; its first
        cases are split by ``split_fractions`` (train, validation, test), and that test set stays frozen."""
        repo = cls(root)
        if (repo.root / ".dvc").exists():
            raise InputError(repo.root, "a dataset repository already exists here")
        try:
            split_fractions = check_fractions(split_fractions)
        except ValueError as exc:
            raise InputError(repo.root, str(exc)) from None
        repo.root.mkdir(parents=True, exist_ok=True)
        repo._git("init", "-q", "-b", "main")
        repo._dvc("init", "-q")
        repo._dvc("config", "core.analytics", "false")
        repo._dvc("remote", "add", "-d", "storage", str(Path(remote).resolve()))
        (repo.root / ".gitignore").write_text(f"{LOCK}\n/cases\n")
        write_manifest([], repo.root / "manifest.csv")
        (repo.root / "split.json").write_text("{}\n")
        (repo.root / SETTINGS).write_text(yaml.safe_dump({"split_fractions": list(split_fractions)}))
        repo._git("add", "-A")
        repo._git(*COMMITTER, "commit", "-q", "-m", "Empty ctscreen dataset")
        return repo

    @classmethod
    def open(cls, root: str | Path) -> "DatasetRepository":
        repo = cls(root)
        if not (repo.root / ".dvc").is_dir() or not (repo.root / ".git").exists():
            raise InputError(repo.root, "not a ctscreen dataset repository (no .git and .dvc); create one with `ctscreen dataset init`")
        return repo

    def version(self, revision: str = "HEAD") -> dict:
        """The dataset version: git revision, DVC content hash of ``cases/``, case count."""
        rev = self._git("rev-parse", revision).strip()
        record = self._show(rev, "cases.dvc")
        data_md5 = yaml.safe_load(record)["outs"][0]["md5"] if record else None
        cases = sum(1 for _ in csv.DictReader(self._show(rev, "manifest.csv").splitlines()))
        return {"git_rev": rev, "data_md5": data_md5, "cases": cases}

    def manifest_at(self, revision: str, out: str | Path) -> Path:
        """The manifest of ``revision`` written to ``out`` with paths into this repository's cases."""
        rows = list(csv.DictReader(self._show(revision, "manifest.csv").splitlines()))
        missing = [r["case_id"] for r in rows if not (self.root / r["image"]).exists()]
        if missing:
            self._dvc("pull", "-q", "cases")  # cases/ absent here (a fresh clone): fetch it from the remote
        return write_manifest([{**r, **{c: str((self.root / r[c]).resolve()) for c in PATH_COLUMNS if r.get(c)}} for r in rows], out)

    def split_at(self, revision: str) -> dict[str, str]:
        return json.loads(self._show(revision, "split.json") or "{}")

    def split_fractions(self) -> tuple[float, float, float]:
        """The first split's fractions (train, validation, test), as the dataset was created with."""
        settings = self.root / SETTINGS
        if not settings.exists():
            return FRACTIONS  # a dataset created before the fractions were a setting
        try:
            return check_fractions(yaml.safe_load(settings.read_text())["split_fractions"])
        except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            raise InputError(settings, f"cannot read the dataset's split fractions ({exc})") from None

    def add_cases(self, rows: list[dict], seed: int = 0, message: str = "Add cases") -> dict:
        """Copy accepted intake cases in, extend the frozen split, commit and push; returns
        ``{"version", "added", "skipped"}`` (skipped: already present with the same content)."""
        with self.lock():
            current = {r["case_id"]: r for r in read_manifest(self.root / "manifest.csv", check_labels=False)}
            added, skipped, staged = [], [], []
            try:
                for row in rows:
                    digest = content_digest(row)
                    known = current.get(row["case_id"])
                    if known is not None:
                        if known.get("content_digest") != digest:
                            raise InputError(row["image"], f"case {row['case_id']} is already in the dataset with other content; "
                                                           "cases are never replaced: give the new study a new case_id")
                        skipped.append(row["case_id"])
                        continue
                    added.append(row["case_id"])
                    staged.append(self._copy_in(row, digest))
                if not staged:
                    return {"version": self.version(), "added": [], "skipped": skipped}
                all_rows = list(current.values()) + staged
                relative = [{**r, **{c: os.path.relpath(r[c], self.root) for c in PATH_COLUMNS if r.get(c)}} for r in all_rows]
                write_manifest(relative, self.root / "manifest.csv")
                split = extend_split(self.split_at("HEAD"), all_rows, seed, self.split_fractions())
                (self.root / "split.json").write_text(json.dumps(split, indent=1, sort_keys=True) + "\n")
                # pushed before committed: a version never names data the remote lacks
                self._dvc("add", "-q", "cases")
                self._dvc("push", "-q")
                self._git("add", "manifest.csv", "split.json", "cases.dvc")
                self._git(*COMMITTER, "commit", "-q", "-m", f"{message}: {len(added)} case(s)")
            except BaseException:
                self._discard(added)
                raise
            return {"version": self.version(), "added": added, "skipped": skipped}

    def _discard(self, case_ids: list[str]) -> None:
        """Back to the last commit after a failed add: its files, and none of the cases copied in."""
        self._git("checkout", "-q", "HEAD", "--", "manifest.csv", "split.json", check=False)
        self._git("checkout", "-q", "HEAD", "--", "cases.dvc", check=False)
        for case_id in case_ids:
            shutil.rmtree(self.root / "cases" / case_id, ignore_errors=True)

    def lock(self):
        """Exclusive use of the repository for one writer; others wait."""
        return exclusive(self.root / LOCK)

    def _copy_in(self, row: dict, digest: str) -> dict:
        case_dir = self.root / "cases" / row["case_id"]
        if case_dir.exists():
            shutil.rmtree(case_dir)  # left by a writer killed before it could clean up
        copied = {"content_digest": digest}
        for column in PATH_COLUMNS:
            if row.get(column):
                source = Path(row[column])
                target = case_dir / (column if source.is_dir() else column + "".join(source.suffixes))
                target.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
                copied[column] = str(target)
        return {**row, **copied}

    def _show(self, revision: str, name: str) -> str:
        result = subprocess.run(["git", "show", f"{revision}:{name}"], cwd=self.root, capture_output=True, text=True)
        return result.stdout if result.returncode == 0 else ""

    def _git(self, *args: str, check: bool = True) -> str:
        return self._run(["git", *args], check)

    def _dvc(self, *args: str) -> str:
        return self._run([sys.executable, "-m", "dvc", *args], True)

    def _run(self, command: list[str], check: bool) -> str:
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True)
        if check and result.returncode != 0:
            shown = " ".join(command[2:] if command[0] == sys.executable else command)  # `python -m dvc push` -> `dvc push`
            told = [line for line in (result.stderr or result.stdout).splitlines() if line.strip() and not line.startswith("Having any troubles")]
            raise DatasetError(f"{self.root}: `{shown}` failed: {' '.join(told)}")
        return result.stdout
