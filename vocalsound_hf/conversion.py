"""Original AST checkpoints (YuanGongND/ast ``.pth``) as transformers ``ASTForAudioClassification`` dirs.

Handles the original repository's released checkpoints (AudioSet, strides 10/12/14/16 at 1024 frames, and
Speech Commands V2-35 at 128 frames) and VocalSound models trained with the original recipe (6 classes, 512
frames). Their geometry is inferred from the tensors; other checkpoints need ``fstride``, ``tstride`` and
``input_tdim`` (and ``norm_mean``/``norm_std``) given explicitly. Pickles are only ever loaded with
``weights_only=True``.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import ASTForAudioClassification

from .features import make_feature_extractor
from .modeling import (
    AUDIOSET_NUM_LABELS,
    PATCH_SIZE,
    ast_config,
    patch_grid,
    save_model_dir,
    timm_to_ast,
)
from .release import CLASS_NAMES, PAPER_NORM_MEAN, PAPER_NORM_STD

logger = logging.getLogger(__name__)

AUDIOSET_NORM = (-4.2677393, 4.5689974)
SPEECH_COMMANDS_NORM = (-6.845978, 5.5654526)
SPEECH_COMMANDS_NUM_LABELS = 35
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


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a PyTorch pickle loaded with ``weights_only=True``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file when it is not a
    mapping of tensors (or cannot be loaded safely).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # garbage makes the unpickler fail in many ways (IndexError, KeyError, ...)
        raise ValueError(f"{path} is not a checkpoint that loads safely (weights_only=True): {err}") from err
    if not isinstance(state, Mapping) or not state:
        raise ValueError(
            f"{path} holds a {type(state).__name__}, expected a state dict (a mapping of tensors)"
        )
    if "model" in state and isinstance(state["model"], Mapping):
        # Facebook's DeiT releases wrap the timm state dict in {"model": ...}.
        state = state["model"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"{path} is not a state dict: expected a mapping of names to tensors")
    return dict(state)


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
    ``problem_type="multi_label_classification"`` (sigmoid in ``pipeline``), the others single-label.
    """
    path = Path(checkpoint)
    state = read_state_dict(path)
    if all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    required = (
        "v.pos_embed",
        "v.cls_token",
        "v.dist_token",
        "v.patch_embed.proj.weight",
        "mlp_head.1.weight",
    )
    missing = [key for key in required if key not in state]
    if missing:
        raise ValueError(f"{path} is not an original AST checkpoint: it has no {', '.join(missing)}")
    head_renames = {"mlp_head.0.": "classifier.layernorm.", "mlp_head.1.": "classifier.dense."}
    converted, unknown = {}, []
    for key, value in state.items():
        prefix = key[: len("mlp_head.0.")]
        if prefix in head_renames:
            converted[head_renames[prefix] + key[len(prefix) :]] = value
        elif not key.startswith("v."):
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"{path} is not an original AST checkpoint: unexpected keys {', '.join(unknown[:5])}"
        )
    backbone = timm_to_ast({k[2:]: v for k, v in state.items() if k.startswith("v.")}, str(path))
    converted.update({f"audio_spectrogram_transformer.{k}": v for k, v in backbone.items()})

    conv = state["v.patch_embed.proj.weight"]
    if tuple(conv.shape[1:]) != (1, PATCH_SIZE, PATCH_SIZE):
        raise ValueError(f"{path}: patch conv of shape {tuple(conv.shape)}, expected [D, 1, 16, 16]")
    hidden_size = conv.shape[0]
    num_patches = state["v.pos_embed"].shape[1] - 2
    num_labels = state["mlp_head.1.weight"].shape[0]
    given = (fstride, tstride, input_tdim)
    if all(value is None for value in given):
        if num_patches not in KNOWN_GEOMETRIES:
            raise ValueError(
                f"{path} has a {num_patches}-patch positional grid, which is none of the known geometries "
                f"({', '.join(map(str, KNOWN_GEOMETRIES))} patches): pass fstride, tstride and input_tdim"
            )
        stride, input_tdim = KNOWN_GEOMETRIES[num_patches]
        fstride = tstride = stride
    elif any(value is None for value in given):
        raise ValueError("pass all of fstride, tstride and input_tdim, or none to infer them")
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
    try:
        model.load_state_dict(converted, strict=True, assign=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit an AST of its own inferred shape: {err}") from err
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


def read_label_csv(path: str | os.PathLike) -> list[str]:
    """Class names from an ``index,mid,display_name`` CSV (the original AST's label files), in index order."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"index", "display_name"} <= set(rows[0]):
        raise ValueError(f"{path} is not a label CSV: expected the columns index,mid,display_name")
    names = {}
    for row in rows:
        try:
            names[int(row["index"])] = row["display_name"]
        except ValueError as err:
            raise ValueError(f"{path}: index {row['index']!r} is not an integer") from err
    if sorted(names) != list(range(len(rows))):
        raise ValueError(f"{path}: the indices are not 0..{len(rows) - 1}, each once")
    if len(set(names.values())) != len(names):
        raise ValueError(f"{path}: display names repeat, so they cannot identify the classes")
    return [names[i] for i in range(len(rows))]


def _normalisation(num_labels: int, input_tdim: int, num_patches: int) -> tuple[float, float] | None:
    """The normalisation the original recipes trained a checkpoint of this kind with, if it is one of them."""
    if num_labels == AUDIOSET_NUM_LABELS and input_tdim == 1024:
        return AUDIOSET_NORM
    if num_labels == SPEECH_COMMANDS_NUM_LABELS and num_patches == 12 * 12:
        return SPEECH_COMMANDS_NORM
    if num_labels == len(CLASS_NAMES):
        return PAPER_NORM_MEAN, PAPER_NORM_STD
    return None


def convert_original_checkpoint(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    label_csv: str | os.PathLike | None = None,
    *,
    fstride: int | None = None,
    tstride: int | None = None,
    input_tdim: int | None = None,
    norm_mean: float | None = None,
    norm_std: float | None = None,
) -> Path:
    """Convert an original AST ``.pth`` into a transformers model directory (safetensors + feature extractor).

    Labels come from ``label_csv`` (``index,mid,display_name``, e.g. AudioSet's ``class_labels_indices.csv``)
    when given. The feature extractor gets the recipe's normalisation (AudioSet -4.2677393/4.5689974,
    Speech Commands -6.845978/5.5654526, VocalSound -3.05/2.71) unless ``norm_mean``/``norm_std`` are given,
    and ``max_length`` = the checkpoint's ``input_tdim``. Everything is checked before ``out_dir`` is written,
    and it is written atomically. 527-way AudioSet models are multi-label: ``pipeline`` applies sigmoid.
    """
    labels = read_label_csv(label_csv) if label_csv is not None else None
    model = load_original_model(checkpoint, fstride=fstride, tstride=tstride, input_tdim=input_tdim)
    config = model.config
    if labels is not None:
        if len(labels) != config.num_labels:
            raise ValueError(
                f"{label_csv} names {len(labels)} classes but {checkpoint} has {config.num_labels} outputs"
            )
        model.config.id2label = dict(enumerate(labels))
        model.config.label2id = {name: i for i, name in enumerate(labels)}
    elif config.num_labels != len(CLASS_NAMES):
        logger.warning(
            "no label CSV given: %s's %d outputs keep placeholder names", checkpoint, config.num_labels
        )
    if (norm_mean is None) != (norm_std is None):
        raise ValueError("pass both norm_mean and norm_std, or neither")
    if norm_mean is None:
        f_dim, t_dim = patch_grid(
            config.num_mel_bins, config.max_length, config.frequency_stride, config.time_stride
        )
        stats = _normalisation(config.num_labels, config.max_length, f_dim * t_dim)
        if stats is None:
            raise ValueError(
                f"{checkpoint} ({config.num_labels} labels, {config.max_length} frames) is not from a known "
                "recipe: pass norm_mean and norm_std"
            )
        norm_mean, norm_std = stats
    extractor = make_feature_extractor(
        max_length=config.max_length, mean=norm_mean, std=norm_std, num_mel_bins=config.num_mel_bins
    )
    return save_model_dir(model, extractor, out_dir)
