"""Reading pretrained weights: safe state-dict loading, timm (DeiT/ViT) key mapping and DeiT encoders.

Pickles are only ever loaded with ``weights_only=True``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, DeiTModel, PreTrainedModel

from .config import ARCHITECTURE_FIELDS

# Keys every timm distilled DeiT state dict has.
_DEIT_KEYS = ("cls_token", "dist_token", "pos_embed", "patch_embed.proj.weight")


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
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # garbage makes the unpickler fail in many ways (IndexError, KeyError, ...)
        raise ValueError(f"{path} is not a checkpoint that loads safely (weights_only=True): {err}") from err
    if not isinstance(state, Mapping) or not state:
        raise ValueError(
            f"{path} holds a {type(state).__name__}, expected a state dict (a mapping of tensors)"
        )
    state = _unwrap(state)
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"{path} is not a state dict: expected a mapping of names to tensors")
    return dict(state)


def _unwrap(state: Mapping) -> Mapping:
    """Facebook's DeiT releases wrap the timm state dict in ``{"model": ...}``: the state dict inside."""
    if "model" in state and isinstance(state["model"], Mapping):
        return state["model"]
    return state


def timm_to_ast(
    state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Rename a timm-format (DeiT/ViT, as in the original AST's ``v.``) state dict to ``ASTModel`` names.

    ``blocks.N.attn.qkv`` is split by rows into ``q_proj``, ``k_proj``, ``v_proj``; DeiT's unused ImageNet
    heads (``head``, ``head_dist``) are dropped. Written by hand: transformers ships no timm-to-AST mapping
    (its conversion script is not part of the package). Raises ``ValueError`` naming ``source`` on unknown
    keys.
    """
    renames = {
        "cls_token": "embeddings.cls_token",
        "dist_token": "embeddings.distillation_token",
        "pos_embed": "embeddings.position_embeddings",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
        "norm.weight": "layernorm.weight",
        "norm.bias": "layernorm.bias",
    }
    block_renames = {
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "attn.proj": "attention.o_proj",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        if key in renames:
            out[renames[key]] = value
        elif key.split(".")[0] in ("head", "head_dist"):
            continue
        elif key.startswith("blocks."):
            _, index, rest = key.split(".", 2)
            module, _, kind = rest.rpartition(".")
            if module == "attn.qkv":
                for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                    out[f"layers.{index}.attention.{name}.{kind}"] = part.clone()
            elif module in block_renames:
                out[f"layers.{index}.{block_renames[module]}.{kind}"] = value
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{source} has keys that are not those of a timm DeiT/ViT: {', '.join(unknown[:5])}")
    return out


def deit_state(source: Any, name: str) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """A DeiT's encoder in ``ASTModel`` names, and the architecture its weights imply.

    ``source`` is a timm state dict or file, or an HF DeiT model, directory or Hub id; ``name`` names it in
    errors.
    """
    if isinstance(source, str | os.PathLike) and Path(source).is_file():
        source = read_state_dict(source)
    if isinstance(source, Mapping):
        return _timm_deit_state(_unwrap(source), name)
    if not isinstance(source, PreTrainedModel):
        config = AutoConfig.from_pretrained(source)
        if config.model_type != "deit":
            raise ValueError(
                f"imagenet_pretrain {name} is a {config.model_type!r} model, expected a 'deit' model"
            )
        source = DeiTModel.from_pretrained(source, config=config, add_pooling_layer=False)
    if source.config.model_type != "deit":
        raise ValueError(f"imagenet_pretrain {name} is a {source.config.model_type!r} model, expected 'deit'")
    backbone = source.base_model
    state = {
        k: v
        for k, v in backbone.state_dict().items()
        if k.split(".")[0] in ("embeddings", "layers", "layernorm")
    }
    state.pop("embeddings.mask_token", None)
    found = {k: getattr(source.config, k) for k in ARCHITECTURE_FIELDS}
    return state, found


def _timm_deit_state(
    source: Mapping[str, torch.Tensor], name: str
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """A timm distilled DeiT state dict in ``ASTModel`` names, and the architecture its tensors imply."""
    for key in _DEIT_KEYS:
        if key not in source:
            raise ValueError(f"{name} is not a timm distilled DeiT state dict: it has no {key!r}")
    state = timm_to_ast(source, name)
    layers = {key.split(".")[1] for key in state if key.startswith("layers.")}
    found = {
        "hidden_size": state["embeddings.cls_token"].shape[-1],
        "num_hidden_layers": len(layers),
        "intermediate_size": state["layers.0.mlp.fc1.weight"].shape[0],
        "patch_size": state["embeddings.patch_embeddings.projection.weight"].shape[-1],
    }
    return state, found
