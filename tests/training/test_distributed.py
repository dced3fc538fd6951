"""Data-parallel training with torchrun: two CPU processes (gloo) stay in lockstep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def test_two_process_torchrun_step(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "tests.training.ddp_worker", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert all(r["world"] == 2 and r["epochs"] == 3 for r in ranks)
    for a, b in zip(ranks[0]["params"], ranks[1]["params"]):
        assert torch.equal(a, b)  # gradients were all-reduced: both replicas hold the same weights
    checkpoint = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    assert len(checkpoint["history"]) == 3  # written once, by rank 0
    for saved, trained in zip(checkpoint["model"].values(), ranks[0]["params"]):
        assert torch.equal(saved, trained)
