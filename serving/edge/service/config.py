"""The screening service's configuration file (YAML), one section per concern. Secrets (the PACS's
password, the web users' password hashes, API token hashes) live in files of their own, named here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from serving.settings import load_settings


@dataclass(frozen=True)
class ReceiverSettings:
    """The DICOM C-STORE receiver the PACS or the scanners push studies to."""

    ae_title: str = "CTSCREEN"
    port: int = 11112  # 0: any free one
    host: str = "127.0.0.1"
    allowed_callers: list[str] = field(default_factory=list)  # calling AE titles accepted; none: none

    def __post_init__(self):
        if not self.allowed_callers:
            raise ValueError("allowed_callers must name the calling AE titles the receiver accepts")


@dataclass(frozen=True)
class DicomWebSettings:
    """A DICOMweb server (the PACS's, or the edge's own Orthanc): polled for new studies, and where
    results are stored by STOW-RS and the viewer reads."""

    url: str  # its DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web
    username: str | None = None
    password_file: Path | None = None  # the password alone, in a file only the service reads

    def credentials(self) -> tuple[str, str] | None:
        if self.username is None:
            return None
        return self.username, self.password_file.read_text().strip() if self.password_file else ""


@dataclass(frozen=True)
class PeerSettings:
    """A DICOM peer the service stores results to by C-STORE."""

    host: str
    port: int
    ae_title: str


@dataclass(frozen=True)
class WebSettings:
    address: str = "127.0.0.1:8080"
    users_file: Path | None = None  # name: password hash (``ctscreen edge passwd``)
    tokens_file: Path | None = None  # name: token hash (``ctscreen edge token``), for APIs and Prometheus
    tls_certificate: Path | None = None  # for sites with no TLS proxy in front
    tls_key: Path | None = None

    def __post_init__(self):
        if self.users_file is None and self.tokens_file is None:
            raise ValueError("name a users_file or a tokens_file: the worklist is never served without authentication")
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ValueError("give both tls_certificate and tls_key, or neither")


@dataclass(frozen=True)
class CentralSettings:
    """Where confirmed cases go: central's intake location (a path, or s3://[host:port/]bucket/prefix)."""

    intake: str
    deidentification_key_file: Path  # the site's key: pseudonyms are stable per site, unguessable without it
    max_backoff_s: float = 900.0


@dataclass(frozen=True)
class ServiceConfig:
    site: str  # this hospital's name, as central knows it
    state_dir: Path  # spool, results, the results store (SQLite) by default, the central queue
    agent_state_dir: Path  # the edge agent's: which release is in service, the node's Triton repository
    web: WebSettings
    receiver: ReceiverSettings | None = None
    poll: DicomWebSettings | None = None  # a DICOMweb server to poll for new studies
    poll_interval_s: float = 30.0
    results_to: PeerSettings | None = None  # C-STORE of the SEG and SR; else STOW-RS to ``pacs``
    pacs: DicomWebSettings | None = None  # the PACS's DICOMweb: STOW of results, and what the viewer reads
    central: CentralSettings | None = None
    database_url: str | None = None  # SQLAlchemy URL; default SQLite under state_dir
    triton_url: str | None = "127.0.0.1:8000"
    triton_protocol: str = "http"
    quiet_period_s: float = 30.0  # a study is complete once no instance arrived for this long
    viewer_dist: Path | None = None  # OHIF's built viewer; default the one `make viewer` installs

    def __post_init__(self):
        if self.receiver is None and self.poll is None:
            raise ValueError("configure a receiver, a poll, or both: the service needs a way for studies to come in")
        if self.results_to is None and self.pacs is None:
            raise ValueError("configure results_to (C-STORE) or pacs (STOW-RS): results go back to the PACS")
        if self.quiet_period_s < 0 or self.poll_interval_s <= 0:
            raise ValueError("quiet_period_s must be >= 0 and poll_interval_s positive")

    @property
    def repository(self) -> Path:
        """The node's Triton repository, kept by the edge agent."""
        return self.agent_state_dir / "repository"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'results.db'}"


def load_service_config(path: str | Path) -> ServiceConfig:
    return load_settings(path, ServiceConfig)
