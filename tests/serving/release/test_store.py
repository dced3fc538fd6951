"""The central release store on real files: keys, releases, channels, expiry settings, one writer."""

from __future__ import annotations

import json
import random
import stat
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Root, Targets

from ctscreen.errors import InputError, OutputError
from serving.release.store import ReleaseError, ReleaseStore, generate_keys

FACTS = {"model": "ctscreen-screening", "mlflow_version": "3", "mlflow_run": "0f3c", "dataset_version": "d41d8",
         "code_version": "a3353fd", "metrics": {"test": {"auc": 0.91}}, "threshold": 0.5}


def write_release_files(folder: Path, seed: int) -> Path:
    """A small model release: a few KB of random 'weights', a config and a nested labels file."""
    rng = random.Random(seed)
    for relpath, content in {"model.onnx": rng.randbytes(4096), "config.pbtxt": b'name: "ctscreen"\n',
                             "labels/classes.txt": f"covid\nnon-covid\n{seed}\n".encode()}.items():
        (folder / relpath).parent.mkdir(parents=True, exist_ok=True)
        (folder / relpath).write_bytes(content)
    return folder


@pytest.fixture
def keys(tmp_path) -> Path:
    return generate_keys(tmp_path / "keys")


@pytest.fixture
def store(tmp_path, keys) -> ReleaseStore:
    return ReleaseStore.create(tmp_path / "store", keys)


@pytest.fixture
def release_files(tmp_path) -> Path:
    return write_release_files(tmp_path / "release", seed=1)


def test_keys_are_one_per_role_owner_only_and_never_overwritten(keys):
    for role in ("root", "targets", "snapshot", "timestamp"):
        assert stat.S_IMODE((keys / f"{role}.key").stat().st_mode) == 0o600
        assert (keys / f"{role}.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        assert (keys / f"{role}.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    before = (keys / "root.key").read_bytes()
    with pytest.raises(ReleaseError, match="never overwritten"):
        generate_keys(keys)
    assert (keys / "root.key").read_bytes() == before


def test_a_new_store_is_a_tuf_repository_served_as_static_files(store, keys):
    metadata = store.store_dir / "metadata"
    assert sorted(path.name for path in metadata.iterdir()) == [
        "1.root.json", "1.snapshot.json", "1.targets.json", "root.json", "timestamp.json"]
    root = Metadata[Root].from_file(str(store.root_path)).signed
    assert root.version == 1 and root.consistent_snapshot
    assert set(root.roles) == {"root", "targets", "snapshot", "timestamp"}
    assert len({keyid for role in root.roles.values() for keyid in role.keyids}) == 4
    assert root.expires - datetime.now(timezone.utc) > timedelta(days=364)
    assert store.describe()["metadata_versions"] == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}
    assert store.releases() == [] and store.channels() == {}


def test_add_publish_rollback_round_trip(store, release_files, tmp_path):
    first = store.add_release(1, release_files, FACTS)
    second = store.add_release(2, write_release_files(tmp_path / "release2", seed=2), {"model": "ctscreen-screening"})
    assert first["facts"] == {**FACTS, "version": 1, "created_at": first["facts"]["created_at"]}
    assert set(first["files"]) == {"model.onnx", "config.pbtxt", "labels/classes.txt"}
    assert first["files"]["model.onnx"]["length"] == 4096

    assert store.publish("stable", 1) == {"channel": "stable", "version": 1, "history": []}
    assert store.publish("stable", 2) == {"channel": "stable", "version": 2, "history": [1]}
    store.publish("canary-2_b", 2)
    assert store.channels() == {"canary-2_b": 2, "stable": 2}
    assert store.rollback("stable") == 1
    assert store.channels()["stable"] == 1
    with pytest.raises(ReleaseError, match="no earlier version"):
        store.rollback("stable")
    with pytest.raises(ReleaseError, match="no channel 'beta'"):
        store.rollback("beta")

    reader = ReleaseStore.open(store.store_dir)
    assert reader.releases() == [first, second]
    listing = reader.describe()
    assert listing["channels"] == {"canary-2_b": 2, "stable": 1}
    assert listing["metadata_versions"]["targets"] == 1 + 2 + 4
    assert datetime.fromisoformat(listing["timestamp_expires"]) > datetime.now(timezone.utc)
    with pytest.raises(ReleaseError, match="opened without keys"):
        reader.publish("stable", 2)


def test_files_are_targets_with_lengths_hashes_and_facts_under_hash_prefixed_names(store, release_files):
    store.add_release(3, release_files, FACTS)
    version = store.describe()["metadata_versions"]["targets"]
    targets = Metadata[Targets].from_file(str(store.store_dir / "metadata" / f"{version}.targets.json")).signed
    model = targets.targets["releases/3/model.onnx"]
    served = store.store_dir / "targets" / "releases" / "3" / f"{model.hashes['sha256']}.model.onnx"
    assert served.read_bytes() == (release_files / "model.onnx").read_bytes()
    assert model.length == 4096
    record = targets.targets["releases/3/release.json"]
    assert record.custom["mlflow_run"] == "0f3c" and record.custom["version"] == 3
    assert record.custom["metrics"] == {"test": {"auc": "0.91"}}  # canonical JSON signs no floats
    assert store.releases()[0]["facts"]["metrics"] == {"test": {"auc": 0.91}}
    nested = targets.targets["releases/3/labels/classes.txt"]
    assert (served.parent / "labels" / f"{nested.hashes['sha256']}.classes.txt").is_file()


def test_released_versions_are_immutable(store, release_files):
    store.add_release(1, release_files, FACTS)
    with pytest.raises(ReleaseError, match="already exists; releases are immutable"):
        store.add_release(1, release_files, FACTS)
    assert len(store.releases()) == 1


@pytest.mark.parametrize("version", [0, -3, True, "2"])
def test_version_must_be_a_positive_integer(store, release_files, version):
    with pytest.raises(ReleaseError, match="positive integer"):
        store.add_release(version, release_files, FACTS)


def test_facts_cannot_name_another_version(store, release_files):
    with pytest.raises(ReleaseError, match="facts say version 7"):
        store.add_release(1, release_files, {**FACTS, "version": 7})


@pytest.mark.parametrize("channel", ["", "a/b", "../stable", "stable.json", "sta ble", "stäble"])
def test_bad_channel_names_are_refused(store, release_files, channel):
    store.add_release(1, release_files, FACTS)
    with pytest.raises(ReleaseError, match="letters, digits"):
        store.publish(channel, 1)


def test_publishing_needs_the_release(store):
    with pytest.raises(ReleaseError, match="no release 4"):
        store.publish("stable", 4)


def test_publishing_the_current_version_again_changes_nothing(store, release_files):
    store.add_release(1, release_files, FACTS)
    store.publish("stable", 1)
    versions = store.describe()["metadata_versions"]
    assert store.publish("stable", 1)["history"] == []
    assert store.describe()["metadata_versions"] == versions


@pytest.mark.parametrize("layout, problem", [
    ({}, "no files"),
    ({"release.json": b"{}"}, "release's own record"),
    ({"model v2.onnx": b"x"}, "letters, digits"),
    ({"sub dir/model.onnx": b"x"}, "letters, digits"),
])
def test_release_folders_that_cannot_be_served_are_refused(store, tmp_path, layout, problem):
    folder = tmp_path / "odd"
    folder.mkdir()
    for relpath, content in layout.items():
        (folder / relpath).parent.mkdir(parents=True, exist_ok=True)
        (folder / relpath).write_bytes(content)
    with pytest.raises(InputError, match=problem):
        store.add_release(1, folder, FACTS)
    assert store.releases() == []


def test_create_refuses_a_folder_in_use(tmp_path, keys):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        ReleaseStore.create(tmp_path / "used", keys)
    with pytest.raises(InputError, match="no such key"):
        ReleaseStore.create(tmp_path / "fresh", tmp_path / "no-keys")


def test_keys_the_root_does_not_list_are_refused(store, release_files, tmp_path):
    stranger = ReleaseStore.open(store.store_dir, generate_keys(tmp_path / "other-keys"))
    with pytest.raises(ReleaseError, match="targets.key is not the targets key this store's root trusts"):
        stranger.add_release(1, release_files, FACTS)
    assert store.describe()["metadata_versions"]["targets"] == 1


def test_timestamp_expiry_is_kept_for_later_writes(tmp_path, keys):
    store = ReleaseStore.create(tmp_path / "store", keys, timestamp_expiry=timedelta(minutes=5))
    assert json.loads((store.store_dir / "store.json").read_text())["expiry_seconds"]["timestamp"] == 300
    before = store.describe()["metadata_versions"]
    ReleaseStore.open(store.store_dir, keys).refresh_timestamp()
    listing = store.describe()
    assert listing["metadata_versions"] == {**before, "timestamp": before["timestamp"] + 1}
    left = datetime.fromisoformat(listing["timestamp_expires"]) - datetime.now(timezone.utc)
    assert timedelta(minutes=4) < left <= timedelta(minutes=5)


def test_writers_take_turns(store, keys, tmp_path):
    folders = [write_release_files(tmp_path / f"release{seed}", seed) for seed in (1, 2)]
    errors = []

    def release(versions, folder):
        writer = ReleaseStore.open(store.store_dir, keys)
        try:
            for version in versions:
                writer.add_release(version, folder, FACTS)
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=release, args=(range(start, 9, 2), folder))
               for start, folder in zip((1, 2), folders, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [record["version"] for record in store.releases()] == list(range(1, 9))
    assert store.describe()["metadata_versions"]["targets"] == 9


def test_a_file_named_like_the_release_record_inside_a_release_is_not_a_release(store, release_files):
    (release_files / "nested").mkdir()
    (release_files / "nested" / "release.json").write_text('{"not": "a record"}')
    store.add_release(1, release_files, FACTS)
    assert [r["version"] for r in store.releases()] == [1] and "nested/release.json" in store.releases()[0]["files"]
