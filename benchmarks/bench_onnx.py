"""ONNX Runtime paths for the inference section: the exported graphs as callables, a busy core, batch dependence.

The graphs are what ``vocalsound-hf export-onnx --int8`` writes (``export_onnx``): the fp32 graph of the
legacy ``torch.onnx`` exporter, and onnxruntime's dynamic int8 quantization of it (int8 weights per output
channel, activations quantized on every call with one scale per tensor, so per batch). Every path here is a
function from ``input_values`` features ``[batch, frames, mel]`` to logits ``[batch, labels]``, so the
section times and compares torch and onnxruntime alike.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from vocalsound_hf.inference.onnx_export import MODEL_FILE, ONNX_SUBDIR, QUANTIZED_FILE, export_onnx

Path_ = Callable[[torch.Tensor], torch.Tensor]
# The linear operators of the graphs, float and quantized: the last of them is the classifier head.
_LINEAR_OPS = {"MatMul", "Gemm", "MatMulInteger", "DynamicQuantizeMatMul"}
# A plain loop, nothing to allocate or read: it takes one core and nothing else, the same on every run. It
# ends by itself once its parent is gone, so a benchmark killed by a signal leaves no core spinning.
_BUSY_LOOP = """
import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:
    for _ in range(1_000_000):
        pass
"""


def onnx_export(model_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """The fp32 and int8 graphs of ``model_dir``, exported into ``out_dir`` unless already there."""
    # export_onnx renames a finished export into place: an interrupted one leaves nothing to be reused.
    if not (out_dir / ONNX_SUBDIR / QUANTIZED_FILE).is_file():
        export_onnx(model_dir, out_dir, int8=True)
    return out_dir / ONNX_SUBDIR / MODEL_FILE, out_dir / ONNX_SUBDIR / QUANTIZED_FILE


def onnx_path(graph: Path, threads: int) -> Path_:
    """A function running ``graph`` in onnxruntime on ``threads`` intra-op threads, as a server would."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # the graph is one chain of operators: nothing to run beside it
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    def run(features: torch.Tensor) -> torch.Tensor:
        (logits,) = session.run(["logits"], {"input_values": features.numpy()})
        return torch.from_numpy(logits)

    return run


def torch_path(model: torch.nn.Module) -> Path_:
    def run(features: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(input_values=features).logits

    return run


def head_is_fp32(graph: Path) -> bool:
    """Whether the graph's last linear operator, the classifier head, is a float one (not quantized)."""
    import onnx

    linear = [node.op_type for node in onnx.load(str(graph)).graph.node if node.op_type in _LINEAR_OPS]
    return bool(linear) and linear[-1] in ("MatMul", "Gemm")


def quantize_int8_head_fp32(graph: Path, target: Path) -> Path:
    """``export_onnx``'s int8 quantization of the fp32 ``graph`` with the classifier head left fp32.

    onnxruntime quantizes the head's ``Gemm`` too; the head is one small matrix whose rounding moves the
    logits most directly, so this is the variant to try when int8 agreement falls short.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    linear = [node.name for node in onnx.load(str(graph)).graph.node if node.op_type in ("MatMul", "Gemm")]
    quantize_dynamic(
        graph, target, per_channel=True, weight_type=QuantType.QInt8, nodes_to_exclude=linear[-1:]
    )
    return target


@contextlib.contextmanager
def busy_core() -> Iterator[subprocess.Popen]:
    """A second process spinning on one core for the duration, as a Space's neighbours share its vCPUs."""
    process = subprocess.Popen([sys.executable, "-c", _BUSY_LOOP, str(os.getpid())])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def batch_dependence(path: Path_, features: torch.Tensor) -> float:
    """Max |logit difference| between each clip of ``features`` run alone and run in one batch with the rest.

    Zero (or float rounding) where every scale is per clip; larger where a scale is taken over the batch,
    since then a loud neighbour coarsens a quiet clip's activations.
    """
    together = path(features)
    alone = torch.cat([path(clip) for clip in features.split(1)])
    return float((together - alone).abs().max())
