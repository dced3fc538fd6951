"""A site's screening service, configured as a site would configure it (a YAML file), and the
synthetic studies sent to it."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
import yaml

from ctscreen.imaging.synth import case_grid, choose_sites, make_case
from ctscreen.imaging.synth.dataset import write_case
from serving.edge.service.auth import new_token, set_password
from serving.edge.service.config import load_service_config
from tests.serving.conftest import running_orthanc

PASSWORD = "correct horse battery"


def write_service_config(root: Path, agent_state_dir: Path, pacs=None, **overrides):
    """The YAML a site writes; ``pacs``: an OrthancServer the results and the viewer go to."""
    root.mkdir(parents=True, exist_ok=True)
    set_password(root / "users.yaml", "dr.who", PASSWORD)
    token = new_token(root / "tokens.yaml", "prometheus")
    settings = {
        "site": "hospital-a", "state_dir": "state", "agent_state_dir": str(agent_state_dir), "quiet_period_s": 0.5,
        "receiver": {"ae_title": "CTSCREEN", "port": 0, "allowed_callers": ["PACS", "STORESCU"]},
        "web": {"address": "127.0.0.1:0", "users_file": "users.yaml", "tokens_file": "tokens.yaml"},
    }
    if pacs is not None:
        (root / "pacs.password").write_text(pacs.password)
        settings["results_to"] = {"host": "127.0.0.1", "port": pacs.dicom_port, "ae_title": pacs.aet}
        settings["pacs"] = {"url": pacs.dicomweb_url, "username": pacs.user, "password_file": "pacs.password"}
    else:
        settings["pacs"] = {"url": "http://127.0.0.1:9/dicom-web"}  # nothing there: results cannot be stored
    settings.update(overrides)
    (root / "service.yaml").write_text(yaml.safe_dump(settings))
    return load_service_config(root / "service.yaml"), token


def synthetic_study(root: Path, seed: int = 3, index: int = 0) -> Path:
    """A tiny synthetic chest CT with its fake PHI, as a scanner writes it: the DICOM folder."""
    spec = make_case(seed, index, choose_sites(seed, 1))
    write_case(spec, case_grid(spec, "tiny"), root)
    return root / "cases" / spec.case_id / "dicom"


def study_uid(folder: Path) -> str:
    return str(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)


@pytest.fixture
def study(tmp_path) -> Path:
    return synthetic_study(tmp_path / "case")


@pytest.fixture(scope="package")
def site_pacs(tmp_path_factory):
    """The hospital's PACS (Orthanc, AE title PACS) for the service's tests."""
    with running_orthanc(tmp_path_factory, "site-pacs", aet="PACS", stable_age_s=1) as server:
        yield server


@pytest.fixture(scope="package")
def released_node(signed_bundles, public_key, tmp_path_factory):
    """A node whose agent put release 1 in service (the agent's state and Triton repository), with no
    Triton running: the service screens in process and says so."""
    from serving.edge.state import EdgeState
    from serving.triton.repository import build_release

    state = tmp_path_factory.mktemp("agent-state")
    build_release(signed_bundles[0], state / "repository", public_key, {"model": "ctscreen-screening"})
    EdgeState(serving=1).save(state)
    return state
