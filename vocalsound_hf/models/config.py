"""The validated ``ASTConfig`` of an AST: a ``model_size`` preset, the input geometry and the label set.

Every check that needs no weights happens here, so a bad argument fails before anything is read or allocated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from transformers import ASTConfig

from ..release import CLASS_NAMES
from .presets import LAYER_NORM_EPS, MODEL_SIZES, PATCH_SIZE, patch_grid

# ASTConfig fields that build_ast sets from its own arguments.
_OWN_ARGUMENTS = {
    "num_mel_bins": "input_fdim",
    "max_length": "input_tdim",
    "frequency_stride": "fstride",
    "time_stride": "tstride",
    "num_labels": "label_dim",
    "id2label": "labels",
    "label2id": "labels",
}
# Fields that pretrained weights fix; an override must agree with them.
ARCHITECTURE_FIELDS = (
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "num_hidden_layers",
    "patch_size",
)
_CONFIG_FIELDS = frozenset(field.name for field in dataclasses.fields(ASTConfig))


def ast_config(
    label_dim: int = 6,
    fstride: int = 10,
    tstride: int = 10,
    input_fdim: int = 128,
    input_tdim: int = 512,
    model_size: str = "base384",
    labels: Sequence[str] | None = None,
    **config_overrides: Any,
) -> ASTConfig:
    """The validated ``ASTConfig`` of ``build_ast`` (same arguments), before any weights are involved."""
    if model_size not in MODEL_SIZES:
        raise ValueError(f"model_size must be one of {', '.join(MODEL_SIZES)}, got {model_size!r}")
    for key in config_overrides:
        if key in _OWN_ARGUMENTS:
            raise ValueError(
                f"set {key!r} with the {_OWN_ARGUMENTS[key]!r} argument, not as a config override"
            )
        if key not in _CONFIG_FIELDS:
            raise ValueError(
                f"{key!r} is not an ASTConfig field (known: {', '.join(sorted(_CONFIG_FIELDS))})"
            )
    fields = {k: v for k, v in MODEL_SIZES[model_size].items() if k != "original_hw"}
    fields.update(patch_size=PATCH_SIZE, layer_norm_eps=LAYER_NORM_EPS)
    fields.update(config_overrides)
    if fields["hidden_size"] % fields["num_attention_heads"]:
        raise ValueError(
            f"hidden_size {fields['hidden_size']} is not divisible by num_attention_heads "
            f"{fields['num_attention_heads']}"
        )
    if not isinstance(fields["patch_size"], int):
        raise ValueError(f"patch_size must be an integer (square patches), got {fields['patch_size']!r}")
    patch_grid(input_fdim, input_tdim, fstride, tstride, fields["patch_size"])
    if labels is None and label_dim == len(CLASS_NAMES):
        labels = CLASS_NAMES
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) != label_dim:
            raise ValueError(f"label_dim is {label_dim} but {len(labels)} labels were given")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be distinct, got {labels}")
        fields.update(id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    fields.setdefault("problem_type", "single_label_classification")
    return ASTConfig(
        num_labels=label_dim,
        frequency_stride=fstride,
        time_stride=tstride,
        num_mel_bins=input_fdim,
        max_length=input_tdim,
        **fields,
    )


def config_grid(config: ASTConfig) -> tuple[int, int]:
    """``(f_dim, t_dim)``: the patch grid of a config's input geometry."""
    return patch_grid(
        config.num_mel_bins, config.max_length, config.frequency_stride, config.time_stride, config.patch_size
    )
