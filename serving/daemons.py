"""Servers this platform starts beside itself on one machine (Triton, Orthanc): a free loopback
port, whether a process still runs, stopping its process group, and the small state file by which
a later command finds a server an earlier one started."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def stop_group(pid: int, timeout: float = 15.0) -> None:
    """TERM to the process group ``pid`` leads (started with ``start_new_session``), KILL after ``timeout``."""
    if not running(pid):
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)
    if running(pid):
        os.killpg(pid, signal.SIGKILL)
        _reap(pid)


def _reap(pid: int) -> None:
    """Collects our own child's exit status so it does not linger as a zombie that still 'runs'."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def read_state(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def write_state(path: Path, state: dict) -> None:
    """Readable by this user only from the start: a state may hold a password (Orthanc's)."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(json.dumps(state))
    partial.replace(path)


def read_server(path: Path, kind):
    """The server a state file records (``kind(**state)``), or None."""
    state = read_state(path)
    return None if state is None else kind(**state)


def stop_server(path: Path, kind, timeout: float = 15.0):
    """Stops the server a state file records (TERM, then KILL) and forgets it; None when none was recorded."""
    server = read_server(path, kind)
    if server is None:
        return None
    stop_group(server.pid, timeout)
    path.unlink(missing_ok=True)
    return server


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """The (address, port) of every TCP socket process ``pid`` listens on, read from /proc: what is
    really bound, whatever the program's configuration claims."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, family in (("tcp", 4), ("tcp6", 6)):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.append((_address(address, family), int(port, 16)))
    return found


def _address(hex_address: str, family: int) -> str:
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":  # /proc prints each 32-bit word in host order
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if family == 4 else socket.AF_INET6, raw)


LOOPBACK = ("127.0.0.1", "::1")
