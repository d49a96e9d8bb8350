"""Reading pretrained weights: safe state-dict loading, timm (DeiT/ViT) key mapping and DeiT encoders.

Pickles are only ever loaded with ``weights_only=True``, so a file's code is never run; the errors say so in
their own words instead of passing on torch's advice to load the file unsafely.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub.utils import HFValidationError, validate_repo_id
from safetensors.torch import load_file
from transformers import AutoConfig, DeiTModel, PreTrainedModel

from .config import ARCHITECTURE_FIELDS

# Keys every timm distilled DeiT state dict has.
_DEIT_KEYS = ("cls_token", "dist_token", "pos_embed", "patch_embed.proj.weight")
# Parameters of every timm transformer block (``blocks.N.*``).
BLOCK_PARAMS = tuple(
    f"{module}.{kind}"
    for module in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
    for kind in ("weight", "bias")
)
# Names with these endings are files: they are never Hub ids, so a missing one is not looked up there.
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
# The class or function torch's safe unpickler refused, as its message names it.
_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")
_SAFE_FORMATS = "only state dicts of tensors (.pth, .pt, .bin) and .safetensors files are loaded"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a PyTorch pickle loaded with ``weights_only=True``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file when it is not a
    mapping of tensors (or cannot be loaded safely: pickled objects other than tensors are refused unrun).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory, expected a checkpoint file (.pth, .bin or .safetensors)")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        with warnings.catch_warnings():
            # A plain pickle (not torch.save) makes torch warn about its protocol before refusing it; the
            # error below says what the file is, and stderr stays one line.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            if path.suffix == ".safetensors":
                state = load_file(path)
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # ``from None``: torch's message, which a traceback would show, advises loading the file unsafely.
        raise ValueError(_refused_pickle(path, err)) from None
    except Exception as err:  # garbage makes the unpickler fail in many ways (IndexError, KeyError, ...)
        raise ValueError(
            f"{path} is not a checkpoint that loads safely: it is damaged or not a PyTorch or safetensors "
            f"file ({first_line(err)})"
        ) from err
    if not isinstance(state, Mapping) or not state:
        raise ValueError(
            f"{path} holds a {type(state).__name__}, expected a state dict (a mapping of tensors)"
        )
    state = _unwrap(state)
    for key, value in state.items():
        if not (isinstance(key, str) and isinstance(value, torch.Tensor)):
            raise ValueError(
                f"{path} is not a state dict: expected a mapping of names to tensors, but {key!r} holds a "
                f"{type(value).__name__}"
            )
    return dict(state)


def _refused_pickle(path: Path, err: pickle.UnpicklingError) -> str:
    """Why the safe unpickler refused ``path``, without torch's advice to load it unsafely."""
    refused = _REFUSED_GLOBAL.search(str(err))
    if refused:
        return (
            f"{path} is not a checkpoint that loads safely: it holds objects other than tensors "
            f"({refused[1]}, from a pickled model or code), which are not loaded, so no code in it ran; "
            f"{_SAFE_FORMATS}"
        )
    return (
        f"{path} is not a checkpoint that loads safely: it is a pickle that torch.save of a state dict "
        f"does not write (a plain pickle, or damaged); {_SAFE_FORMATS}"
    )


def first_line(err: BaseException) -> str:
    """``Type: first line of the message``, never torch's advice to load a file unsafely."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines or "weights_only" in lines[0]:
        return type(err).__name__
    return f"{type(err).__name__}: {lines[0]}"


def missing_location(name_or_path: str | os.PathLike) -> str | None:
    """What is wrong with a model location that is neither an existing path nor a possible Hub id.

    ``"no such file"`` for a missing checkpoint file name, ``"no such directory"`` for a missing path that no
    Hub id can be; ``None`` when the name exists locally or may name a Hub repository.
    """
    text = str(name_or_path)
    if Path(text).exists():
        return None
    if text.lower().endswith(CHECKPOINT_SUFFIXES):
        return "no such file"
    try:
        validate_repo_id(text)
    except HFValidationError:
        return "no such directory"
    return None


def hub_failure(err: BaseException) -> str:
    """Why a name that is no local directory could not be loaded as a Hub id, in one line."""
    reason = (
        "the Hub is switched off (HF_HUB_OFFLINE) and the local cache does not hold it"
        if hub_constants.HF_HUB_OFFLINE
        else "the Hub is unreachable or the id is wrong"
    )
    return f"no such directory, and as a Hub id it could not be loaded: {reason} ({first_line(err)})"


def missing_block_keys(keys: Iterable[str], prefix: str = "") -> list[str]:
    """The ``{prefix}blocks.N.*`` parameters a timm state dict with these keys lacks (blocks 0..N-1 each whole).

    A state dict without any block lacks ``{prefix}blocks.0.*``: a transformer has at least one.
    """
    start = f"{prefix}blocks."
    indices = {key[len(start) :].partition(".")[0] for key in keys if key.startswith(start)}
    numbers = sorted(int(index) for index in indices if index.isdigit())
    if not numbers:
        return [f"{start}0.* (no transformer blocks)"]
    keys = set(keys)
    return [
        f"{start}{i}.{param}"
        for i in range(numbers[-1] + 1)
        for param in BLOCK_PARAMS
        if f"{start}{i}.{param}" not in keys
    ]


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
        elif key.startswith("blocks.") and key.count(".") >= 3:
            _, index, rest = key.split(".", 2)
            module, _, kind = rest.rpartition(".")
            if module == "attn.qkv":
                if value.ndim == 0 or value.shape[0] % 3:
                    raise ValueError(
                        f"{source}: {key} has shape {list(value.shape)}, whose rows do not split into "
                        "query, key and value"
                    )
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
    if isinstance(source, str | os.PathLike):
        problem = missing_location(source)
        if problem is not None:
            raise FileNotFoundError(f"imagenet_pretrain {name}: {problem}")
        if Path(source).is_file():
            source = read_state_dict(source)
    if isinstance(source, Mapping):
        return _timm_deit_state(_unwrap(source), name)
    if not isinstance(source, PreTrainedModel):
        try:
            config = AutoConfig.from_pretrained(source)
        except OSError as err:
            if Path(source).exists():
                raise
            raise OSError(f"imagenet_pretrain {name}: {hub_failure(err)}") from err
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
    missing = missing_block_keys(source)
    if missing:
        raise ValueError(f"{name} is not a timm distilled DeiT state dict: it has no {listed(missing)}")
    ranks = {"cls_token": 3, "dist_token": 3, "pos_embed": 3, "patch_embed.proj.weight": 4}
    for key, rank in (ranks | {"blocks.0.mlp.fc1.weight": 2}).items():
        if source[key].ndim != rank:
            raise ValueError(
                f"{name} is not a timm distilled DeiT state dict: {key} has shape "
                f"{list(source[key].shape)}, expected {rank} dimensions"
            )
    state = timm_to_ast(source, name)
    layers = {key.split(".")[1] for key in state if key.startswith("layers.")}
    found = {
        "hidden_size": state["embeddings.cls_token"].shape[-1],
        "num_hidden_layers": len(layers),
        "intermediate_size": state["layers.0.mlp.fc1.weight"].shape[0],
        "patch_size": state["embeddings.patch_embeddings.projection.weight"].shape[-1],
    }
    return state, found


def listed(names: list[str], limit: int = 5) -> str:
    """The first ``limit`` names, comma-separated, and how many more there are."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
