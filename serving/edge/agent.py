"""The edge agent: one long-running process per hospital node that takes releases from central's
channel and serves them from the node's own Triton, with nobody on site.

Each poll: refresh central's TUF metadata (backing off while central is unreachable) -> read the
channel -> download the release it names into staging (TUF checks every file; resumed file by file)
-> check the bundle's model signature -> install into the node's Triton repository -> load it beside
the release in service -> smoke-test it on the release's reference cases -> switch -> report.
Anything that fails leaves the release in service untouched; a refused release is kept for
inspection with its reason and not retried until the channel names another one. The state is on
disk, replaced whole, and the switch is the one write that puts a release in service, so an agent
killed anywhere restarts into a working model.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import shutil
import threading
import time
from pathlib import Path

from ctscreen.errors import CTScreenError
from serving.edge.config import EdgeConfig
from serving.edge.metrics import AgentHTTP, AgentMetrics, seconds_since
from serving.edge.release_files import install_release, verify_release
from serving.edge.smoke import SmokeTestFailed, smoke_test
from serving.edge.state import EdgeState
from serving.edge.triton_models import model_states, serve_versions, serves
from serving.release.channel import ChannelUnreachable, ReleaseChannel, VerificationError
from serving.release.store import ReleaseError
from serving.triton.client import TritonPair

log = logging.getLogger("ctscreen.edge.agent")
LOCK = "agent.lock"
AGENT = "agent.json"  # the running agent's pid and HTTP address, for `ctscreen edge rollback`


class EdgeError(CTScreenError):
    """An agent request that cannot be done: another agent runs, nothing to roll back to."""


class Refused(Exception):
    """A release this node will not serve, with the kind of check that refused it."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind, self.reason = kind, reason


class EdgeAgent:
    def __init__(self, config: EdgeConfig):
        self.config = config
        self.state_dir = config.state_dir
        self.state = EdgeState.load(self.state_dir)
        self.metrics = AgentMetrics(lambda: seconds_since(self.state.last_poll))
        self._local = threading.local()  # tritonclient's HTTP client is not thread-safe: one per thread
        self._lock_file = None
        self._http: AgentHTTP | None = None
        self._mutex = threading.Lock()  # the loop and an on-site rollback never switch at once
        self._stopping = threading.Event()
        self._last_loop = time.monotonic()
        self._failures_in_a_row = 0
        self._show_state()

    # --- lifetime ---------------------------------------------------------------------------------

    def __enter__(self) -> "EdgeAgent":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def acquire(self) -> None:
        """One agent per node: the state folder's lock, held for the agent's life."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.state_dir / LOCK, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise EdgeError(f"{self.state_dir}: another edge agent is running on this node ({_agent_record(self.state_dir)})") from None
        self._lock_file = handle

    def close(self) -> None:
        self._stopping.set()
        if self._http is not None:
            self._http.stop()
            self._http = None
        (self.state_dir / AGENT).unlink(missing_ok=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def serve_http(self) -> str:
        self._http = AgentHTTP(self.config.metrics_address, self.metrics, self.healthy, self.ready, self.status, self.rollback).start()
        _write_json(self.state_dir / AGENT, {"pid": os.getpid(), "http": self._http.address})
        return self._http.address

    def run(self, polls: int | None = None) -> None:
        """Poll until stopped (or ``polls`` times): the interval with jitter, backing off while central is down."""
        self.recover()
        done = 0
        while not self._stopping.is_set() and (polls is None or done < polls):
            self.poll_once()
            done += 1
            if polls is None or done < polls:
                self._stopping.wait(self.next_wait())

    def stop(self) -> None:
        self._stopping.set()

    def next_wait(self) -> float:
        interval = self.config.poll_interval_s * (2 ** min(self._failures_in_a_row, 16))
        return min(interval, self.config.max_backoff_s) * (1 + random.uniform(-self.config.jitter, self.config.jitter))

    # --- the loop ---------------------------------------------------------------------------------

    def recover(self) -> None:
        """After a start, or a Triton restart (which serves only what it is told): Triton serves exactly
        the versions the state names, a candidate a killed agent left loaded among them no more."""
        with self._mutex:
            if not self.state.loaded():
                return
            try:
                self._serve(self.state.loaded())
            except Exception as error:  # Triton down: screening falls back in-process; tried again next poll
                log.error("cannot load release(s) %s into Triton at %s: %s", self.state.loaded(), self.config.triton_url, error)

    def poll_once(self) -> None:
        self._last_loop = time.monotonic()
        if self.state.serving is not None and not serves(self.triton.client, self.config.repository, self.state.serving):
            self.recover()
        try:
            channel = self._channel()
            channel.refresh()
            wanted = channel.channel_version(self.config.channel)
        except ChannelUnreachable as error:
            self._failures_in_a_row += 1
            self.metrics.polls.labels("unreachable").inc()
            log.warning("central unreachable (%s); next poll in about %.0f s", error.reason, self.next_wait())
            return
        except (VerificationError, ReleaseError) as error:
            self._failures_in_a_row = 0
            self.metrics.polls.labels("refused").inc()
            self._failed(None, Refused("verification", str(error)))
            return
        self._failures_in_a_row = 0
        self.metrics.polls.labels("ok").inc()
        self.state.last_poll, self.state.channel_version = time.time(), wanted
        if self.state.held_back is not None and wanted != self.state.held_back:
            self.state.held_back = None  # the channel moved on: follow it again
        self.state.save(self.state_dir)
        self._show_state()
        with self._mutex:
            if wanted == self.state.serving or wanted == self.state.held_back or str(wanted) in self.state.refused:
                return
            try:
                self._update(channel, wanted)
            except Refused as refusal:
                self._failed(wanted, refusal)
            except Exception as error:  # Triton down, a full disk: not this release's fault, tried again next poll
                self._failed(wanted, Refused("unavailable", f"{type(error).__name__}: {error}"), permanent=False)
            finally:
                self._last_loop = time.monotonic()

    def _update(self, channel: ReleaseChannel, version: int) -> None:
        if version == self.state.previous and serves(self.triton.client, self.config.repository, version):
            log.info("the channel names release %s again, still loaded: switching back to it", version)
            self._switch(version)
            return
        folder = self._download(channel, version)
        record = json.loads((folder / "release.json").read_text())
        try:
            verify_release(folder, record, self.config.bundle_public_key)
        except VerificationError as error:
            self.metrics.verification_failures.inc()
            raise Refused("signature", str(error)) from None
        install_release(folder, record, self.config.repository)
        log.info("release %s verified and installed; loading it beside %s", version, self.state.serving or "nothing")
        self._load_candidate(version)
        try:
            worst = smoke_test(self.triton, self.config.repository, version, float(record["facts"].get("smoke_tolerance", 1e-4)))
        except Exception as error:
            if not isinstance(error, SmokeTestFailed) and not _live(self.triton.client):
                raise  # the server went away mid-test: try again next poll
            self.metrics.smoke_tests.labels("fail").inc()
            self._serve(self.state.loaded())
            raise Refused("smoke-test", f"release {version}: {error}" if not isinstance(error, SmokeTestFailed) else str(error)) from None
        self.metrics.smoke_tests.labels("pass").inc()
        log.info("release %s passed its smoke test (largest differences %s)", version, worst)
        self._switch(version)
        self._prune()

    def _prune(self) -> None:
        """After a switch only the two loaded releases stay, installed; downloads are done with."""
        keep = {str(v) for v in self.state.loaded()}
        shutil.rmtree(self.state_dir / "staging", ignore_errors=True)
        for cached in (self.state_dir / "tuf" / "cache").glob("releases%2F*"):
            cached.unlink(missing_ok=True)
        for installed in self.config.repository.glob("*/*"):
            if installed.is_dir() and installed.name.isdigit() and installed.name not in keep:
                shutil.rmtree(installed, ignore_errors=True)

    def _load_candidate(self, version: int) -> None:
        """``version`` loaded beside the release in service; on a refusal the node is put back as it was."""
        try:
            self._serve([v for v in (self.state.serving, version) if v is not None])
            refused = None if serves(self.triton.client, self.config.repository, version) else f"Triton did not make it ready: {self._load_reason(version)}"
        except Exception as error:
            if not _live(self.triton.client):
                raise  # Triton itself is down: not this release's fault
            refused = f"Triton refused to load it: {error}"
        if refused is not None:
            self._serve(self.state.loaded())
            raise Refused("load", f"release {version}: {refused}")

    def _download(self, channel: ReleaseChannel, version: int) -> Path:
        folder = self._staging(version)
        if (folder / "release.json").exists():
            return folder  # downloaded whole by an agent killed later; verify_release checks it again
        cache = self.state_dir / "tuf" / "cache"
        before = _size(cache)
        try:
            channel.download_release(version, folder, progress=lambda path, done, total: log.info(
                "release %s: %d/%d files (%s)", version, done, total, path))
        except VerificationError as error:
            self.metrics.verification_failures.inc()
            raise Refused("verification", str(error)) from None
        except ChannelUnreachable as error:
            raise ConnectionError(f"central unreachable mid-download ({error.reason})") from None
        finally:
            self.metrics.downloaded.inc(max(0, _size(cache) - before))
        return folder

    def _switch(self, version: int) -> None:
        """The one write that puts ``version`` in service; the release it replaces stays loaded as the previous one."""
        old = self.state.serving
        self.state.serving, self.state.previous = version, old if old != version else self.state.previous
        self.state.last_success = {"time": time.time(), "version": version}
        self.state.save(self.state_dir)
        self._serve(self.state.loaded())
        self.metrics.last_success.set(self.state.last_success["time"])
        self._show_state()
        log.info("release %s in service (previous: %s)", version, self.state.previous)

    def _serve(self, versions: list[int]) -> None:
        serve_versions(self.triton.client, self.config.repository, sorted(set(versions)), self.config.python_env)

    def _failed(self, version: int | None, refusal: Refused, permanent: bool = True) -> None:
        now = time.time()
        self.state.last_failure = {"time": now, "version": version, "kind": refusal.kind, "reason": refusal.reason}
        if permanent and version is not None:
            self.state.refused[str(version)] = f"{refusal.kind}: {refusal.reason}"
            self._keep_for_inspection(version, refusal)
        self.state.save(self.state_dir)
        self.metrics.failures.labels(refusal.kind).inc()
        self.metrics.last_failure.set(now)
        self.metrics.last_failure_reason.clear()
        self.metrics.last_failure_reason.labels(str(version), refusal.kind, refusal.reason[:200]).set(1)
        log.error("release %s not taken (%s): %s; still serving %s", version, refusal.kind, refusal.reason, self.state.serving)

    def _keep_for_inspection(self, version: int, refusal: Refused) -> None:
        kept = self.state_dir / "refused" / f"{version}-{int(time.time())}"
        kept.mkdir(parents=True)
        if self._staging(version).exists():
            self._staging(version).rename(kept / "release")
        for model_dir in self.config.repository.glob(f"*/{version}"):
            if version not in self.state.loaded():
                shutil.move(str(model_dir), kept / f"installed-{model_dir.parent.name}")
        (kept / "reason.txt").write_text(f"{refusal.kind}: {refusal.reason}\n")

    # --- on-site requests and probes --------------------------------------------------------------

    def rollback(self) -> dict:
        """Back to the previous release, already loaded; the one left is held back until the channel moves."""
        with self._mutex:
            if self.state.previous is None:
                raise EdgeError(f"{self.state_dir}: no previous release to roll back to")
            if not serves(self.triton.client, self.config.repository, self.state.previous):
                self._serve(self.state.loaded())
            left = self.state.serving
            self.state.serving, self.state.previous, self.state.held_back = self.state.previous, left, left
            self.state.save(self.state_dir)
            self._show_state()
            log.warning("rolled back on site from release %s to %s", left, self.state.serving)
            return self.status()

    def status(self) -> dict:
        return {"serving": self.state.serving, "previous": self.state.previous, "channel": self.config.channel,
                "channel_version": self.state.channel_version, "held_back": self.state.held_back,
                "last_poll": self.state.last_poll,
                "seconds_since_last_poll": None if self.state.last_poll is None else round(seconds_since(self.state.last_poll), 1),
                "last_success": self.state.last_success, "last_error": self.state.last_failure, "refused": self.state.refused}

    def healthy(self) -> bool:
        """The loop is alive: a poll ended within three of its longest waits, or one is under way."""
        return self._mutex.locked() or time.monotonic() - self._last_loop < 3 * self.config.max_backoff_s + 60

    def ready(self) -> bool:
        return self.state.serving is not None and serves(self.triton.client, self.config.repository, self.state.serving)

    # --- helpers ----------------------------------------------------------------------------------

    @property
    def triton(self) -> TritonPair:
        """The node's Triton, through this thread's own client."""
        if not hasattr(self._local, "pair"):
            self._local.pair = TritonPair(self.config.triton_url, "http", timeout_s=120)
        return self._local.pair

    def _channel(self) -> ReleaseChannel:
        return ReleaseChannel(self.state_dir / "tuf" / "metadata", self.config.metadata_url, self.config.targets_url,
                              self.config.trusted_root.read_bytes(), self.state_dir / "tuf" / "cache")

    def _staging(self, version: int) -> Path:
        return self.state_dir / "staging" / str(version)

    def _load_reason(self, version: int) -> str:
        try:
            states = model_states(self.triton.client)
        except Exception as error:  # the server itself is the problem then
            return f"no index from Triton ({error})"
        return "; ".join(f"{model}: {versions.get(str(version), 'not loaded')}" for model, versions in sorted(states.items()))

    def _show_state(self) -> None:
        self.metrics.serving_version.set(self.state.serving or 0)
        self.metrics.channel_version.set(self.state.channel_version or 0)
        self.metrics.serving_info.clear()
        if self.state.serving is not None:
            self.metrics.serving_info.labels("ctscreen-screening", str(self.state.serving)).set(1)


def _live(client) -> bool:
    try:
        return bool(client.is_server_live())
    except Exception:  # connection refused and the like
        return False


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _write_json(path: Path, value: dict) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(value))
    partial.replace(path)


def _agent_record(state_dir: Path) -> str:
    try:
        return "pid {pid}, http {http}".format(**json.loads((state_dir / AGENT).read_text()))
    except (OSError, ValueError, KeyError):
        return "its pid is not recorded"


def running_agent(state_dir: Path) -> dict | None:
    """The agent running over ``state_dir`` (pid and HTTP address), if one holds the lock."""
    state_dir = Path(state_dir)
    if not (state_dir / LOCK).exists():
        return None
    with open(state_dir / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return json.loads((state_dir / AGENT).read_text())
            except (OSError, ValueError):
                return {"pid": None, "http": None}
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None
