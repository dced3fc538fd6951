"""ONNX Runtime sessions, without torch: what Triton's Python-backend network models import."""

from __future__ import annotations


def onnx_session(path, threads: int | None = None):
    """The ONNX Runtime session every ctscreen ONNX graph runs in, here and inside Triton: every graph
    optimisation on. ``threads`` fixes the intra-op thread count (default: ONNX Runtime's, one per physical core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # the arena keeps every block it ever grew to: 9.1 GB peak for one paper-size U-Net++ window, 4.0 GB
    # without it, at the same speed (benchmarks/paper_pair_cpu.py)
    options.enable_cpu_mem_arena = False
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
