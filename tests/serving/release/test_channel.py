"""A node's channel to a real store served over loopback HTTP (or read as a folder), and every way
central's answer can be wrong: each refused with a reason, nothing assembled where the node looks."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization.json import JSONSerializer

from serving.release.channel import ChannelUnreachable, ReleaseChannel, VerificationError
from serving.release.store import ReleaseError, ReleaseStore, generate_keys, load_signer
from tests.serving.release.test_store import FACTS, write_release_files


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def serve():
    """serve(folder) -> (base URL, list of request paths): a loopback static server for the test."""
    servers = []

    def start(folder: Path):
        requests = []

        class Handler(_QuietHandler):
            def do_GET(self):
                requests.append(self.path)
                super().do_GET()

        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}", requests

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def keys(tmp_path) -> Path:
    return generate_keys(tmp_path / "keys")


@pytest.fixture
def sources(tmp_path) -> dict[int, Path]:
    return {version: write_release_files(tmp_path / f"release{version}", seed=version) for version in (1, 2)}


@pytest.fixture
def store(tmp_path, keys, sources) -> ReleaseStore:
    """Releases 1 and 2, ``stable`` at 1."""
    store = ReleaseStore.create(tmp_path / "store", keys)
    for version, folder in sources.items():
        store.add_release(version, folder, {**FACTS, "mlflow_version": str(version)})
    store.publish("stable", 1)
    return store


@pytest.fixture
def served(store, serve):
    return serve(store.store_dir)


def node(tmp_path: Path, store: ReleaseStore, base: str, name: str = "node") -> ReleaseChannel:
    return ReleaseChannel(tmp_path / name / "metadata", f"{base}/metadata", f"{base}/targets",
                          store.root_path.read_bytes(), tmp_path / name / "cache")


def assert_same_files(release_dir: Path, source: Path) -> None:
    expected = {path.relative_to(source).as_posix() for path in source.rglob("*") if path.is_file()}
    got = {path.relative_to(release_dir).as_posix() for path in release_dir.rglob("*") if path.is_file()}
    assert got == expected | {"release.json"}
    for relpath in expected:
        assert (release_dir / relpath).read_bytes() == (source / relpath).read_bytes()


def served_file(store: ReleaseStore, target: str) -> Path:
    """The file the store serves for ``target`` (its name prefixed with the content hash)."""
    directory, _, name = target.rpartition("/")
    [path] = (store.store_dir / "targets" / directory).glob(f"*.{name}")
    return path


def current_metadata(store: ReleaseStore, role: str) -> Path:
    if role == "timestamp":
        return store.store_dir / "metadata" / "timestamp.json"
    return store.store_dir / "metadata" / f"{store.describe()['metadata_versions'][role]}.{role}.json"


def assert_nothing_assembled(dest: Path) -> None:
    assert not dest.exists()
    assert not list(dest.parent.glob(f".{dest.name}*"))


def test_a_node_follows_the_channel_over_http(tmp_path, store, served, sources):
    base, _ = served
    channel = node(tmp_path, store, base)
    channel.refresh()
    assert channel.channel_version("stable") == 1
    assert channel.release(1)["facts"]["mlflow_version"] == "1"
    seen = []
    dest = channel.download_release(1, tmp_path / "releases" / "1", progress=lambda *step: seen.append(step))
    assert_same_files(dest, sources[1])
    assert seen == [("config.pbtxt", 1, 3), ("labels/classes.txt", 2, 3), ("model.onnx", 3, 3)]

    store.publish("stable", 2)
    assert channel.channel_version("stable") == 1  # what the last refresh saw
    channel.refresh()
    assert channel.channel_version("stable") == 2
    assert_same_files(channel.download_release(2, tmp_path / "releases" / "2"), sources[2])
    store.rollback("stable")
    channel.refresh()
    assert channel.channel_version("stable") == 1


@pytest.mark.parametrize("as_url", [str, Path.as_uri], ids=["plain-path", "file-url"])
def test_a_node_reads_a_store_folder(tmp_path, store, sources, as_url):
    channel = ReleaseChannel(tmp_path / "node" / "metadata", as_url(store.store_dir / "metadata"),
                             as_url(store.store_dir / "targets"), store.root_path.read_bytes(),
                             tmp_path / "node" / "cache")
    assert channel.channel_version("stable") == 1
    assert_same_files(channel.download_release(1, tmp_path / "releases" / "1"), sources[1])


def test_unknown_channels_and_releases_are_not_verification_failures(tmp_path, store, served):
    channel = node(tmp_path, store, served[0])
    with pytest.raises(ReleaseError, match="no channel 'beta'") as refused:
        channel.channel_version("beta")
    assert not isinstance(refused.value, VerificationError)
    with pytest.raises(ReleaseError, match="no release 9"):
        channel.download_release(9, tmp_path / "releases" / "9")


def test_downloads_resume_file_by_file(tmp_path, store, served, sources):
    base, requests = served
    channel = node(tmp_path, store, base)
    model = served_file(store, "releases/1/model.onnx")
    hidden = model.rename(tmp_path / "hidden")  # the last file: the others are fetched before it fails
    dest = tmp_path / "releases" / "1"
    with pytest.raises(VerificationError, match="missing from the store"):
        channel.download_release(1, dest)
    assert_nothing_assembled(dest)

    hidden.rename(model)
    requests.clear()
    channel.download_release(1, dest)
    assert [path for path in requests if path.startswith("/targets/")] == [f"/targets/releases/1/{model.name}"]
    assert_same_files(dest, sources[1])

    requests.clear()
    channel.download_release(1, tmp_path / "again")
    assert [path for path in requests if path.startswith("/targets/")] == []


@pytest.mark.parametrize("fault, reason", [
    ("truncated", "length or hash mismatch"),
    ("flipped-byte", "length or hash mismatch"),
    ("missing", "missing from the store"),
])
def test_damaged_targets_are_refused(tmp_path, store, served, fault, reason):
    model = served_file(store, "releases/1/model.onnx")
    content = model.read_bytes()
    if fault == "truncated":
        model.write_bytes(content[:1000])
    elif fault == "flipped-byte":
        model.write_bytes(content[:100] + bytes([content[100] ^ 0xFF]) + content[101:])
    else:
        model.unlink()
    dest = tmp_path / "releases" / "1"
    with pytest.raises(VerificationError, match=reason) as refused:
        node(tmp_path, store, served[0]).download_release(1, dest)
    assert refused.value.subject == "target releases/1/model.onnx"
    assert_nothing_assembled(dest)


@pytest.mark.parametrize("role", ["timestamp", "snapshot", "targets"])
def test_metadata_signed_with_another_key_is_refused(tmp_path, store, served, role):
    channel = node(tmp_path, store, served[0])
    channel.refresh()
    store.publish("stable", 2)
    impostor = load_signer(generate_keys(tmp_path / "impostor-keys"), role)
    path = current_metadata(store, role)
    metadata = Metadata.from_file(str(path))
    metadata.sign(impostor)
    metadata.to_file(str(path), JSONSerializer(compact=False))
    with pytest.raises(VerificationError, match=f"bad signature.*{role} was signed by 0/1 keys"):
        channel.refresh()
    with pytest.raises(VerificationError):  # nothing of the refused state is used
        channel.channel_version("stable")


def test_a_root_signed_by_other_keys_is_refused(tmp_path, store, served):
    impostor_keys = generate_keys(tmp_path / "impostor-keys")
    root = Metadata[Root].from_file(str(store.root_path))
    root.signed.version = 2
    for role in root.signed.roles:
        for keyid in list(root.signed.roles[role].keyids):
            root.signed.revoke_key(keyid, role)
        root.signed.add_key(load_signer(impostor_keys, role).public_key, role)
    root.sign(load_signer(impostor_keys, "root"))
    root.to_file(str(store.store_dir / "metadata" / "2.root.json"), JSONSerializer(compact=False))
    with pytest.raises(VerificationError, match="bad signature.*root was signed by 0/1 keys"):
        node(tmp_path, store, served[0]).refresh()


def test_older_metadata_after_newer_is_a_rollback(tmp_path, store, served):
    channel = node(tmp_path, store, served[0])
    timestamp = current_metadata(store, "timestamp")
    older = timestamp.read_bytes()  # correctly signed, and pointing at a snapshot that is still served
    store.publish("stable", 2)
    channel.refresh()
    assert channel.channel_version("stable") == 2
    timestamp.write_bytes(older)
    with pytest.raises(VerificationError, match="rollback.*timestamp version"):
        channel.refresh()


def test_an_expired_timestamp_freezes_the_node_until_central_re_signs_it(tmp_path, keys, sources, serve):
    store = ReleaseStore.create(tmp_path / "store", keys, timestamp_expiry=timedelta(seconds=2))
    store.add_release(1, sources[1], FACTS)
    store.publish("stable", 1)
    channel = node(tmp_path, store, serve(store.store_dir)[0])
    channel.refresh()
    expires = datetime.fromisoformat(store.describe()["timestamp_expires"])
    time.sleep(max(0.0, (expires - datetime.now(timezone.utc)).total_seconds()) + 0.2)
    with pytest.raises(VerificationError, match="expired metadata.*timestamp.json is expired"):
        channel.refresh()
    store.refresh_timestamp()
    channel.refresh()
    assert channel.channel_version("stable") == 1


def test_central_down_is_unreachable_not_refused(tmp_path, store):
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ChannelUnreachable, match="cannot reach central.*Connection refused"):
        node(tmp_path, store, f"http://127.0.0.1:{port}").refresh()
    with pytest.raises(ChannelUnreachable, match="cannot reach central.*No such file or directory"):
        node(tmp_path, store, str(tmp_path / "unmounted")).refresh()


@pytest.mark.parametrize("crash_before", ["/channels/", ".targets.json", ".snapshot.json", "timestamp.json"])
def test_a_write_cut_short_leaves_the_previous_state_served(tmp_path, store, served, monkeypatch, crash_before):
    channel = node(tmp_path, store, served[0])
    replace = os.replace

    def crash(source, destination):
        if crash_before in str(destination):
            raise OSError(28, "No space left on device")
        replace(source, destination)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", crash)
        with pytest.raises(OSError, match="No space left"):
            store.publish("stable", 2)
    assert ReleaseStore.open(store.store_dir).channels() == {"stable": 1}
    channel.refresh()
    assert channel.channel_version("stable") == 1
    assert not [path for path in store.store_dir.rglob(".partial-*")]

    store.publish("stable", 2)
    channel.refresh()
    assert channel.channel_version("stable") == 2


def test_a_node_refreshing_during_writes_sees_one_whole_state(tmp_path, store, served):
    channel = node(tmp_path, store, served[0])
    writing = threading.Event()

    def write():
        for version in (2, 1) * 8:
            store.publish("stable", version)
        writing.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen = []
    while not writing.is_set() or not seen:
        channel.refresh()
        seen.append(channel.channel_version("stable"))
    writer.join()
    assert set(seen) <= {1, 2}
    assert store.channels() == {"stable": 1}  # the writer got through all its changes
