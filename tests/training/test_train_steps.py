"""`ctscreen train seg` then `ctscreen train cls`: the pipeline's two training steps on one run folder."""

from __future__ import annotations

import json
import subprocess
import sys

from ctscreen.manifest import read_manifest
from ctscreen.training.split import split_by_patient


def _ctscreen(*args):
    return subprocess.run([sys.executable, "-m", "ctscreen.cli", *args], capture_output=True, text=True, timeout=900)


def test_seg_then_cls_share_the_split_and_the_checkpoint(trained_pairs, tmp_path):
    # the session's preprocessed cases (its lung-region model, its grid) from the cache: only the training runs here
    common = ["--manifest", str(trained_pairs["manifest"]), "--out", str(tmp_path), "--cache", str(trained_pairs["root"] / "run" / "cache"),
              "--lungs", str(trained_pairs["config"].lung_model),
              "--set", "segmentation.profile=tiny", "--set", "classification.profile=tiny",
              "--set", "segmentation.optimiser.epochs=1", "--set", "segmentation.samples_per_case=1",
              "--set", "classification.optimiser.epochs=1", "--set", "classification.models=[resnet50]",
              "--set", "evaluation.bootstrap_resamples=100"]
    seg = _ctscreen("train", "seg", *common, "--set", "segmentation.models=[fcn8s]", "--split", "0.5,0.3,0.2", "--json")
    assert seg.returncode == 0, seg.stderr[-2000:]
    ranked = json.loads((tmp_path / "segmentation" / "results.json").read_text())
    assert set(ranked) == {"fcn8s"} and ranked["fcn8s"]["validation_dice"] is not None
    checkpoint = tmp_path / "segmentation" / "fcn8s" / "last.pt"
    split, stamp = (tmp_path / "split.json").read_text(), checkpoint.stat().st_mtime_ns
    rows = read_manifest(trained_pairs["manifest"])
    asked = split_by_patient(rows, (0.5, 0.3, 0.2), seed=0)
    assert json.loads(split) == asked != split_by_patient(rows, seed=0)  # a larger validation set, as asked

    cls = _ctscreen("train", "cls", "--segmentation", "best", *common, "--json")  # the default --split: OUT's split.json stays
    assert cls.returncode == 0, cls.stderr[-2000:]
    summary = json.loads(cls.stdout)
    assert summary["winner"]["segmentation"] == "fcn8s" and summary["winner"]["classification"] == "resnet50"
    assert checkpoint.stat().st_mtime_ns == stamp  # the finished segmentation model was reused, not retrained
    assert (tmp_path / "split.json").read_text() == split
    assert json.loads((tmp_path / "segmentation" / "results.json").read_text())["fcn8s"] == ranked["fcn8s"]
    assert (tmp_path / "bundle" / "bundle.json").exists()
