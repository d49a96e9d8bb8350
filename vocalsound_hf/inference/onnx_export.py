"""Export a saved VocalSound AST to ONNX, for runtimes without torch (plain onnxruntime, transformers.js).

The output folder has the layout optimum and transformers.js load: ``onnx/model.onnx`` (and, with
``int8``, ``onnx/model_quantized.onnx``) next to the model's ``config.json`` (which holds the labels) and
``preprocessor_config.json`` (the fbank settings and norm stats the input must be made with). The graph
takes ``input_values`` [batch, max_length, num_mel_bins], the feature extractor's output, and gives
``logits`` [batch, num_labels]; the batch axis is dynamic.

The legacy TorchScript exporter is used (``dynamo=False``): for this model its graph ran faster in
onnxruntime than the dynamo exporter's. The int8 variant is onnxruntime's dynamic quantization (weights
int8 per output channel, activations quantized at run time), which needs no calibration data.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path

import torch

from ..fileio import staged_path
from .classifier import ModelLoadError, _load_model_dir

logger = logging.getLogger(__name__)

ONNX_SUBDIR = "onnx"
MODEL_FILE = "model.onnx"
QUANTIZED_FILE = "model_quantized.onnx"
# Copied as they are: the model's labels and geometry, and how its input features are made.
CONFIG_FILES = ("config.json", "preprocessor_config.json")
INPUT_NAME = "input_values"
OUTPUT_NAME = "logits"
# 17 is the first opset with a LayerNormalization operator, so each of the AST's layer norms stays one node.
OPSET = 17
# The example batch the graph is traced with: not 1, so that no size-1 batch is baked into a shape.
_TRACE_BATCH = 2


class _LogitsOnly(torch.nn.Module):
    """The model with the logits tensor as its only output (the exporter cannot name a ModelOutput's fields)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=input_values).logits


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} already exists and is not an empty directory")


def _export_fp32(model: torch.nn.Module, path: Path) -> None:
    config = model.config
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(_TRACE_BATCH, config.max_length, config.num_mel_bins, generator=generator)
    with torch.no_grad(), warnings.catch_warnings():
        # transformers' sdpa path tests ``q_length > 1 and ... and is_causal``: the AST's attention is never
        # causal, so the value the tracer freezes is the right one for every input length.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, message="Converting a tensor")
        torch.onnx.export(
            _LogitsOnly(model).eval(),
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _quantize_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per channel: one scale per output row of each weight, which keeps the small head's logits close.
    quantize_dynamic(source, target, per_channel=True, weight_type=QuantType.QInt8)


def export_onnx(model_dir: str | os.PathLike, out_dir: str | os.PathLike, *, int8: bool = False) -> Path:
    """Export the AST model directory ``model_dir`` to ONNX in ``out_dir`` and return ``out_dir``.

    ``out_dir`` must not exist or be empty; it is built under a temporary name and renamed into place, so
    it never holds half an export. Raises ``ModelLoadError`` (an ``OSError``) for a location that is not a
    saved AST model directory and ``FileExistsError`` for an occupied ``out_dir``.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir).absolute()
    _check_out_dir(out_dir)  # before the seconds of loading and exporting
    if not model_dir.is_dir():
        # Not looked up on the Hub: the config files are copied from the directory itself.
        raise ModelLoadError(model_dir, "no such directory" if not model_dir.exists() else "not a directory")
    model, _ = _load_model_dir(str(model_dir))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with staged_path(out_dir) as tmp:
        (tmp / ONNX_SUBDIR).mkdir(parents=True)
        fp32 = tmp / ONNX_SUBDIR / MODEL_FILE
        _export_fp32(model, fp32)
        if int8:
            _quantize_int8(fp32, tmp / ONNX_SUBDIR / QUANTIZED_FILE)
        for name in CONFIG_FILES:
            shutil.copyfile(model_dir / name, tmp / name)
        _check_out_dir(out_dir)  # another process may have filled it meanwhile
        os.replace(tmp, out_dir)
    logger.info(
        "exported %s (%d labels, %d frames)%s to %s",
        model_dir,
        model.config.num_labels,
        model.config.max_length,
        " with an int8 copy" if int8 else "",
        out_dir,
    )
    return out_dir
