"""Original AST checkpoints (YuanGongND/ast ``.pth``, ``module.v.*`` + ``module.mlp_head.*``) as transformers'.

Handles the original repository's released checkpoints (AudioSet, strides 10/12/14/16 at 1024 frames, and
Speech Commands V2-35 at 128 frames) and VocalSound models trained with the original recipe (6 classes, 512
frames). Their geometry is inferred from the tensors; other checkpoints need ``fstride``, ``tstride`` and
``input_tdim`` given explicitly.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from transformers import ASTForAudioClassification

from .checkpoints import listed, missing_block_keys, read_state_dict, timm_to_ast
from .config import ast_config
from .presets import AUDIOSET_NUM_LABELS, PATCH_SIZE, patch_grid

logger = logging.getLogger(__name__)

# Patch count of a checkpoint's positional grid -> (stride, input_tdim), all at 128 mel bins: the original
# repository's released AudioSet and Speech Commands checkpoints, and the VocalSound recipe (512 frames).
KNOWN_GEOMETRIES: dict[int, tuple[int, int]] = {
    12 * 101: (10, 1024),
    10 * 85: (12, 1024),
    9 * 73: (14, 1024),
    8 * 64: (16, 1024),
    12 * 12: (10, 128),
    12 * 50: (10, 512),
}
# Every DeiT the original builds on has 64-dimensional attention heads; a checkpoint cannot tell the count.
_HEAD_DIM = 64
# Tensors outside the blocks, with the layout whose sizes give the model's shape.
_LAYOUTS = {
    "v.pos_embed": "[1, patches + 2, width]",
    "v.cls_token": "[1, 1, width]",
    "v.dist_token": "[1, 1, width]",
    "v.patch_embed.proj.weight": f"[width, 1, {PATCH_SIZE}, {PATCH_SIZE}]",
    "mlp_head.1.weight": "[labels, width]",
}
# The other tensors outside the blocks.
_OTHER_KEYS = (
    "v.patch_embed.proj.bias",
    "v.norm.weight",
    "v.norm.bias",
    "mlp_head.0.weight",
    "mlp_head.0.bias",
    "mlp_head.1.bias",
)
_HEAD_RENAMES = {"mlp_head.0.": "classifier.layernorm.", "mlp_head.1.": "classifier.dense."}
_NOT_ORIGINAL = "is not an original AST checkpoint"


def load_original_model(
    checkpoint: str | os.PathLike,
    *,
    fstride: int | None = None,
    tstride: int | None = None,
    input_tdim: int | None = None,
    input_fdim: int = 128,
) -> ASTForAudioClassification:
    """An original AST ``.pth`` (``module.v.*`` + ``module.mlp_head.*``), loaded strictly into transformers'.

    The width, depth and label count come from the tensors; the strides and ``input_tdim`` from
    ``KNOWN_GEOMETRIES`` unless given. The outputs are named after the VocalSound classes for a 6-way head,
    with transformers' placeholders otherwise. AudioSet (527-way) models get
    ``problem_type="multi_label_classification"`` (sigmoid in ``pipeline``), the others single-label. Raises
    ``ValueError`` naming the file and what it lacks or has of the wrong shape, before any model is built.
    """
    path = Path(checkpoint)
    state = read_state_dict(path)
    if all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    _check_layout(state, path)
    converted = _to_ast_keys(state, path)

    hidden_size = state["v.patch_embed.proj.weight"].shape[0]
    num_patches = state["v.pos_embed"].shape[1] - 2
    num_labels = state["mlp_head.1.weight"].shape[0]
    fstride, tstride, input_tdim = _geometry(path, num_patches, fstride, tstride, input_tdim)
    f_dim, t_dim = patch_grid(input_fdim, input_tdim, fstride, tstride)
    if f_dim * t_dim != num_patches:
        raise ValueError(
            f"{input_fdim}x{input_tdim} input at stride {fstride}/{tstride} gives a {f_dim}x{t_dim} grid "
            f"({f_dim * t_dim} patches), but {path} has {num_patches}"
        )
    config = ast_config(
        label_dim=num_labels,
        fstride=fstride,
        tstride=tstride,
        input_fdim=input_fdim,
        input_tdim=input_tdim,
        hidden_size=hidden_size,
        num_attention_heads=max(hidden_size // _HEAD_DIM, 1),
        intermediate_size=state["v.blocks.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=len({key.split(".")[2] for key in state if key.startswith("v.blocks.")}),
        problem_type=(
            "multi_label_classification"
            if num_labels == AUDIOSET_NUM_LABELS
            else "single_label_classification"
        ),
    )
    with torch.device("meta"):
        model = ASTForAudioClassification(config)
    _load_exactly(model, converted, path)
    logger.info(
        "read original AST checkpoint %s: %d labels, %dx%d grid at stride %d/%d, %d frames",
        path,
        num_labels,
        f_dim,
        t_dim,
        fstride,
        tstride,
        input_tdim,
    )
    return model.eval()


def _check_layout(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse a state dict that lacks a tensor of the original's, or whose shape-giving tensors are malformed.

    Everything the model's shape is read from is checked here, so that an AST-like file of another layout
    gets a message naming what it lacks instead of failing on a missing key or dimension further on.
    """
    missing = [key for key in _LAYOUTS if key not in state]
    missing += missing_block_keys(state, prefix="v.")
    missing += [key for key in _OTHER_KEYS if key not in state]
    if missing:
        raise ValueError(f"{path} {_NOT_ORIGINAL}: it has no {listed(missing)}")
    fc1 = "v.blocks.0.mlp.fc1.weight"
    for key, layout in (_LAYOUTS | {fc1: "[intermediate, width]"}).items():
        shape = list(state[key].shape)
        if len(shape) != layout.count(",") + 1:
            raise ValueError(f"{path} {_NOT_ORIGINAL}: {key} has shape {shape}, expected {layout}")
    conv = state["v.patch_embed.proj.weight"]
    if tuple(conv.shape[1:]) != (1, PATCH_SIZE, PATCH_SIZE):
        raise ValueError(
            f"{path} {_NOT_ORIGINAL}: v.patch_embed.proj.weight has shape {list(conv.shape)}, expected "
            f"{_LAYOUTS['v.patch_embed.proj.weight']}"
        )
    if state["v.pos_embed"].shape[1] < 3:
        raise ValueError(
            f"{path} {_NOT_ORIGINAL}: v.pos_embed has shape {list(state['v.pos_embed'].shape)}, expected "
            f"{_LAYOUTS['v.pos_embed']} with at least one patch"
        )


def _to_ast_keys(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The original's ``v.*`` / ``mlp_head.*`` tensors under ``ASTForAudioClassification`` names."""
    converted, unknown = {}, []
    for key, value in state.items():
        prefix = key[: len("mlp_head.0.")]
        if prefix in _HEAD_RENAMES:
            converted[_HEAD_RENAMES[prefix] + key[len(prefix) :]] = value
        elif not key.startswith("v."):
            unknown.append(key)
    if unknown:
        raise ValueError(f"{path} {_NOT_ORIGINAL}: unexpected keys {', '.join(unknown[:5])}")
    backbone = timm_to_ast({k[2:]: v for k, v in state.items() if k.startswith("v.")}, str(path))
    converted.update({f"audio_spectrogram_transformer.{k}": v for k, v in backbone.items()})
    return converted


def _load_exactly(model: ASTForAudioClassification, converted: dict[str, torch.Tensor], path: Path) -> None:
    """Load every tensor into the (meta) model, refusing in one line any that is missing or misshapen."""
    expected = model.state_dict()
    misfits = [
        f"{key} is {list(value.shape)}, expected {list(expected[key].shape)}"
        for key, value in converted.items()
        if key in expected and value.shape != expected[key].shape
    ]
    misfits += [f"no {key}" for key in expected if key not in converted]
    misfits += [f"unexpected {key}" for key in converted if key not in expected]
    if misfits:
        raise ValueError(f"{path} does not fit an AST of its own inferred shape: {listed(misfits, 3)}")
    model.load_state_dict(converted, strict=True, assign=True)


def _geometry(
    path: Path, num_patches: int, fstride: int | None, tstride: int | None, input_tdim: int | None
) -> tuple[int, int, int]:
    """``(fstride, tstride, input_tdim)``: as given, or from ``KNOWN_GEOMETRIES`` when none is given."""
    given = (fstride, tstride, input_tdim)
    if all(value is None for value in given):
        if num_patches not in KNOWN_GEOMETRIES:
            raise ValueError(
                f"{path} has a {num_patches}-patch positional grid, which is none of the known geometries "
                f"({', '.join(map(str, KNOWN_GEOMETRIES))} patches): pass fstride, tstride and input_tdim"
            )
        stride, input_tdim = KNOWN_GEOMETRIES[num_patches]
        return stride, stride, input_tdim
    if any(value is None for value in given):
        raise ValueError("pass all of fstride, tstride and input_tdim, or none to infer them")
    return fstride, tstride, input_tdim
