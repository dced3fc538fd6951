"""Orthanc on loopback: what it really listens on, authentication, stopping; the /proc reader behind it."""

from __future__ import annotations

import os
import socket
import stat

import httpx
import pytest

from serving import daemons
from serving.pacs import orthanc


def test_listens_on_loopback_only(pacs):
    addresses = daemons.listening_addresses(pacs.pid)
    assert {port for _, port in addresses} == {pacs.http_port, pacs.dicom_port}
    assert {address for address, _ in addresses} <= set(daemons.LOOPBACK)


def test_refuses_unauthenticated_http(pacs):
    assert httpx.get(f"{pacs.url}/system").status_code == 401
    assert httpx.get(f"{pacs.dicomweb_url}/studies", auth=(pacs.user, "wrong")).status_code == 401
    with pacs.client() as client:
        assert client.get("/system").json()["DicomAet"] == "PACS"


def test_stop(tmp_path):
    try:
        server = orthanc.start(tmp_path / "orthanc")
    except orthanc.PacsUnavailable as exc:
        pytest.skip(str(exc))
    assert orthanc.read_state(tmp_path / "orthanc") == server
    for holds_the_password in (orthanc.STATE, "orthanc.config.json"):
        assert stat.S_IMODE((tmp_path / "orthanc" / holds_the_password).stat().st_mode) == 0o600
    assert orthanc.stop(tmp_path / "orthanc") == server
    assert not server.running()
    assert orthanc.read_state(tmp_path / "orthanc") is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/system")
    assert orthanc.stop(tmp_path / "orthanc") is None


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("family, address", [
    (socket.AF_INET, "127.0.0.1"),
    pytest.param(socket.AF_INET6, "::1", marks=pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")),
])
def test_listening_addresses_reads_what_is_bound(family, address):
    with socket.socket(family) as listening, socket.socket(family) as bound_only:
        listening.bind((address, 0))
        listening.listen()
        bound_only.bind((address, 0))  # bound, not listening: not reported
        found = daemons.listening_addresses(os.getpid())
        assert (address, listening.getsockname()[1]) in found
        assert bound_only.getsockname()[1] not in {port for _, port in found}
