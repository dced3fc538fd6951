"""Launched by test_distributed under torchrun: two gloo processes train one model together."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ctscreen.training.config import OptimiserConfig
from ctscreen.training.loop import fit
from tests.training.test_loop import _model, _problem

if __name__ == "__main__":
    out = Path(sys.argv[1])
    batches, _, _ = _problem()
    model = _model()
    result = fit(model, nn.BCEWithLogitsLoss(), batches, OptimiserConfig(lr=0.05, weight_decay=0, epochs=3), out / "ckpt", progress=False)
    rank = dist.get_rank()
    torch.save({"params": [p.detach() for p in model.parameters()], "epochs": len(result.history), "world": dist.get_world_size()},
               out / f"rank{rank}.pt")
    dist.destroy_process_group()
