"""A real Triton Inference Server on this machine, without a container engine.

The ``nvidia-pytriton`` wheel carries a CPU-capable ``tritonserver`` (Python backend only) with its
libraries. ``obtain()`` fetches that one wheel with pip into the platform's tools folder and unpacks
the server from it (nothing else is downloaded, and the ``pytriton`` package itself is not installed:
it pins numpy < 2). ``start()`` runs it on loopback with explicit model control and waits until it
is ready; its state (pid, ports, log) is kept in a folder so ``status`` and ``stop`` find it later.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ctscreen.errors import CTScreenError
from ctscreen.home import home
from ctscreen.locking import exclusive
from serving import daemons

WHEEL = "nvidia-pytriton==0.7.0"  # tritonserver 2.51.0
SERVER_VERSION = "2.51.0"
STATE = "triton.json"


class TritonUnavailable(CTScreenError):
    """No Triton server could be had: the binary cannot be obtained, or the server does not come up."""


def tools_dir() -> Path:
    return home() / "tools" / f"tritonserver-{SERVER_VERSION}"


def obtain(progress=print) -> Path:
    """The ``tritonserver`` folder (bin/, backends/), unpacked from the wheel on first use."""
    root = tools_dir()
    server = root / "pytriton" / "tritonserver"
    if (root / ".complete").exists():
        return server
    root.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(root.parent / ".tritonserver.lock"):  # processes starting servers at once unpack it once
        if not (root / ".complete").exists():
            _unpack(root, progress)
    return server


def _unpack(root: Path, progress) -> None:
    progress(f"obtaining tritonserver {SERVER_VERSION}: pip download {WHEEL} (55 MB) into {root}")
    with tempfile.TemporaryDirectory() as scratch:
        download = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", scratch, WHEEL],
                                  capture_output=True, text=True)
        wheels = list(Path(scratch).glob("*.whl"))
        if download.returncode != 0 or not wheels:
            raise TritonUnavailable(f"cannot download {WHEEL}: {download.stderr.strip().splitlines()[-1:] or download.returncode}")
        shutil.rmtree(root, ignore_errors=True)
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            for member in wheel.infolist():
                if member.filename.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/")):
                    path = Path(wheel.extract(member, partial))
                    mode = member.external_attr >> 16
                    if mode:
                        path.chmod(mode & 0o777)
    stub = f"python_backend_stubs/{sys.version_info.major}.{sys.version_info.minor}/triton_python_backend_stub"
    unpacked = partial / "pytriton" / "tritonserver"
    if not (unpacked / stub).exists():
        raise TritonUnavailable(f"{WHEEL} has no Python-backend stub for Python {sys.version_info.major}.{sys.version_info.minor}")
    # beside the backend, the stub's built-in library path finds the wheel's libraries
    shutil.copy2(unpacked / stub, unpacked / "backends" / "python" / "triton_python_backend_stub")
    (partial / ".complete").touch()
    partial.rename(root)
    progress(f"tritonserver {SERVER_VERSION} ready in {root}")


@dataclass
class TritonServer:
    pid: int
    repository: str
    http_port: int
    grpc_port: int
    metrics_port: int
    log: str

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def describe(self) -> dict:
        return {**asdict(self), "http": self.http_url, "grpc": self.grpc_url, "metrics": self.metrics_url,
                "running": self.running(), "ready": self.ready()}

    def running(self) -> bool:
        return daemons.running(self.pid)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def index(self) -> list[dict]:
        """Every model version the server knows and its state (``READY``, ``UNAVAILABLE`` with a reason)."""
        request = urllib.request.Request(f"http://{self.http_url}/v2/repository/index", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())


def start(repository: str | Path, state_dir: str | Path, load: list[str] = (), timeout: float = 120.0, progress=print) -> TritonServer:
    """Starts ``tritonserver`` on loopback over ``repository`` in explicit model-control mode, loading
    ``load`` (none by default: whoever serves loads what it serves), and waits until it is ready."""
    state_dir = Path(state_dir)
    running = read_state(state_dir)
    if running is not None and running.running():
        raise TritonUnavailable(f"a Triton server (pid {running.pid}) already runs from {state_dir}: stop it first")
    server_dir = obtain(progress)
    state_dir.mkdir(parents=True, exist_ok=True)
    ports = [daemons.free_port() for _ in range(3)]
    log = state_dir / "tritonserver.log"
    repository = str(repository) if str(repository).startswith("s3://") else str(Path(repository).resolve())  # as Triton accepts it
    command = [str(server_dir / "bin" / "tritonserver"), f"--model-repository={repository}",
               f"--backend-directory={server_dir / 'backends'}", "--model-control-mode=explicit",
               *[f"--load-model={name}" for name in load],
               "--http-address=127.0.0.1", f"--http-port={ports[0]}", "--grpc-address=127.0.0.1", f"--grpc-port={ports[1]}",
               "--metrics-address=127.0.0.1", f"--metrics-port={ports[2]}", "--allow-gpu-metrics=false",
               "--pinned-memory-pool-byte-size=0", "--cuda-memory-pool-byte-size=0:0", "--exit-timeout-secs=5", "--log-verbose=0"]
    # the stub must find this Python's own libpython, not the system's
    environment = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [sysconfig.get_config_var("LIBDIR"),
                                                                                  os.environ.get("LD_LIBRARY_PATH")]))}
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    server = TritonServer(process.pid, repository, *ports, str(log))
    daemons.write_state(state_dir / STATE, asdict(server))
    deadline = time.monotonic() + timeout
    while not server.ready():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(state_dir)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-8:])
            raise TritonUnavailable(f"tritonserver did not become ready (see {log}):\n{tail}")
        time.sleep(0.25)
    return server


def stop(state_dir: str | Path, timeout: float = 15.0) -> TritonServer | None:
    """Stops the server started from ``state_dir`` (TERM, then KILL); None when none was running."""
    return daemons.stop_server(Path(state_dir) / STATE, TritonServer, timeout)


def read_state(state_dir: str | Path) -> TritonServer | None:
    return daemons.read_server(Path(state_dir) / STATE, TritonServer)
