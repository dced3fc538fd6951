"""Orthanc, Debian's open PACS, run on loopback for tests and demos (``infra/orthanc/`` holds its
configuration).

Orthanc 1.10 binds its HTTP and DICOM ports on every interface whatever its configuration says, so
it is started with ``infra/orthanc/loopback_bind.c`` preloaded (compiled once into the platform's
tools folder) and ``start`` then reads from /proc what the process really listens on, refusing to
leave it running on anything but loopback. HTTP requires a user (generated per instance); the
DICOMweb plugin answers under ``/dicom-web`` and ``/wado``.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from ctscreen.errors import CTScreenError
from ctscreen.home import home
from serving import daemons

INFRA = Path(__file__).resolve().parents[2] / "infra" / "orthanc"
BINARY = Path("/usr/sbin/Orthanc")
STATE = "orthanc.json"


class PacsUnavailable(CTScreenError):
    """Orthanc cannot be started here: not installed, no compiler for the loopback shim, or it does not come up."""


@dataclass
class OrthancServer:
    pid: int
    http_port: int
    dicom_port: int
    aet: str
    user: str
    password: str = field(repr=False)
    log: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        return self.user, self.password

    def running(self) -> bool:
        return daemons.running(self.pid)

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """A client of Orthanc's REST API, authenticated."""
        return httpx.Client(base_url=self.url, auth=self.auth, timeout=timeout)

    def ready(self) -> bool:
        try:
            with self.client(timeout=2) as client:
                return client.get("/system").status_code == 200
        except httpx.HTTPError:
            return False


def loopback_shim() -> Path:
    """The compiled bind() shim, built from ``infra/orthanc/loopback_bind.c`` on first use."""
    source = INFRA / "loopback_bind.c"
    shim = home() / "tools" / "loopback_bind.so"
    if shim.exists() and shim.stat().st_mtime >= source.stat().st_mtime:
        return shim
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise PacsUnavailable("no C compiler (cc) to build the loopback shim Orthanc is started with")
    shim.parent.mkdir(parents=True, exist_ok=True)
    partial = shim.with_suffix(".partial.so")
    built = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(source), "-ldl"], capture_output=True, text=True)
    if built.returncode != 0:
        raise PacsUnavailable(f"cannot build {source}: {built.stderr.strip()}")
    partial.replace(shim)
    return shim


def start(state_dir: str | Path, aet: str = "ORTHANC", stable_age_s: int = 60, modalities: dict | None = None,
          timeout: float = 60.0) -> OrthancServer:
    """Orthanc over storage in ``state_dir``, on free loopback ports; ``modalities``: the DICOM peers
    it may send to (``{"NAME": [aet, host, port]}``)."""
    if not BINARY.exists():
        raise PacsUnavailable(f"{BINARY} not found: install Debian's orthanc and orthanc-dicomweb (make system)")
    state_dir = Path(state_dir).resolve()
    found = read_state(state_dir)
    if found is not None and found.running():
        raise PacsUnavailable(f"an Orthanc (pid {found.pid}) already runs from {state_dir}: stop it first")
    shim = loopback_shim()
    http_port, dicom_port = daemons.free_port(), daemons.free_port()
    user, password = "ctscreen", secrets.token_urlsafe(18)
    config = state_dir / "orthanc.config.json"  # one file: Orthanc refuses a setting given in two
    state_dir.mkdir(parents=True, exist_ok=True)
    config.touch(mode=0o600)  # it holds the password
    config.write_text(json.dumps({
        **json.loads((INFRA / "orthanc.json").read_text()),
        "StorageDirectory": str(state_dir / "storage"), "IndexDirectory": str(state_dir / "storage"),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": aet, "StableAge": stable_age_s,
        "RegisteredUsers": {user: password}, "DicomModalities": modalities or {},
    }, indent=2))
    log = state_dir / "orthanc.log"
    with open(log, "ab") as out:
        process = subprocess.Popen([str(BINARY), str(config)], stdout=out, stderr=subprocess.STDOUT,
                                   env={"LD_PRELOAD": str(shim), "PATH": "/usr/bin:/bin"}, start_new_session=True)
    server = OrthancServer(process.pid, http_port, dicom_port, aet, user, password, str(log))
    daemons.write_state(state_dir / STATE, asdict(server))
    deadline = time.monotonic() + timeout
    while not server.ready():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(state_dir)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-8:])
            raise PacsUnavailable(f"Orthanc did not come up (see {log}):\n{tail}")
        time.sleep(0.2)
    exposed = [f"{address}:{port}" for address, port in daemons.listening_addresses(server.pid) if address not in daemons.LOOPBACK]
    if exposed:
        stop(state_dir)
        raise PacsUnavailable(f"Orthanc listened beyond loopback ({', '.join(exposed)}); stopped it")
    return server


def stop(state_dir: str | Path, timeout: float = 15.0) -> OrthancServer | None:
    """Stops the server started from ``state_dir`` (TERM, then KILL); None when none was running."""
    return daemons.stop_server(Path(state_dir) / STATE, OrthancServer, timeout)


def read_state(state_dir: str | Path) -> OrthancServer | None:
    return daemons.read_server(Path(state_dir) / STATE, OrthancServer)
