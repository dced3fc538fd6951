"""`ctscreen pipeline run --mlflow-uri http://...` against a real MLflow tracking server on loopback."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ctscreen.dataset.synthetic import synthetic_intake
from tests.pipelines.tiny import LUNGS, TINY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(tmp_path / "mlflow-server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                               "--default-artifact-root", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"mlflow server did not start: {(tmp_path / 'mlflow-server.log').read_text()[-2000:]}")
            time.sleep(1)
    yield url
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
    log.close()


def test_pipeline_run_tracks_and_registers_on_a_real_mlflow_server(tmp_path, mlflow_server):
    intake = tmp_path / "intake"
    synthetic_intake(intake, cases=12, key=secrets.token_bytes(32), profile="tiny", progress=False)
    env = {**os.environ, "CTSCREEN_HOME": str(tmp_path / "home")}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "ctscreen.cli", "pipeline", "run", "--intake", str(intake), "--mlflow-uri", mlflow_server,
               "--segmentation-models", "fcn8s", "--classification-models", "resnet50", "--gate", "min_sensitivity=0.0",
               "--gate", "auto_promote=true", "--json", *[a for o in TINY for a in ("--set", o)],
               *[a for o in LUNGS for a in ("--lungs-set", o)]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(result.stdout)
    assert run["version"] == "1" and run["champion"] == "1"
    listing = subprocess.run([sys.executable, "-m", "ctscreen.cli", "registry", "list", "--tracking-uri", mlflow_server, "--json"],
                             capture_output=True, text=True, timeout=120, env=env)
    versions = json.loads(listing.stdout)
    assert [(v["version"], v["aliases"]) for v in versions] == [("1", ["challenger", "champion"])]
    assert versions[0]["tags"]["pair"] == "fcn8s -> resnet50"
    assert not Path(tmp_path / "home" / "mlflow.db").exists()  # everything went to the server
    assert any((tmp_path / "server-artifacts").rglob("bundle.json"))
