"""The Audio Spectrogram Transformer as transformers' ``ASTForAudioClassification``, built the original way.

transformers provides the model, its config and its feature extractor; this module adds what the original
AST (YuanGongND/ast, ``ASTModel``) has and transformers lacks: the DeiT ``model_size`` presets, ImageNet
(DeiT) and AudioSet initialisation with the original positional-embedding adaptation, and a VocalSound head
taken from the AudioSet head. Everything it builds saves and loads with plain transformers.

LayerNorm eps: the original uses 1e-6 in the blocks and final norm (timm) and PyTorch's 1e-5 in the head;
``ASTConfig`` has one ``layer_norm_eps`` for all of them. We use 1e-6 (``LAYER_NORM_EPS``), so every block
matches exactly and only the head LayerNorm differs, by about 1e-5 in the logits.

Scores: VocalSound is single-label (``problem_type="single_label_classification"``, softmax in
``pipeline("audio-classification")``). AudioSet heads were trained multi-label: for sigmoid scores, call
``pipeline("audio-classification", model=..., function_to_apply="sigmoid")`` or apply ``torch.sigmoid`` to
the logits.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from transformers import ASTConfig, ASTForAudioClassification

from .features import make_feature_extractor
from .release import AUDIOSET_INDICES, CLASS_NAMES, PAPER_NORM_MEAN, PAPER_NORM_STD

logger = logging.getLogger(__name__)

# The distilled DeiT models behind the original presets; original_hw is the side of their square
# positional grid (224 / 16 = 14, 384 / 16 = 24).
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny224": {
        "hidden_size": 192,
        "num_attention_heads": 3,
        "intermediate_size": 768,
        "num_hidden_layers": 12,
        "original_hw": 14,
    },
    "small224": {
        "hidden_size": 384,
        "num_attention_heads": 6,
        "intermediate_size": 1536,
        "num_hidden_layers": 12,
        "original_hw": 14,
    },
    "base224": {
        "hidden_size": 768,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "original_hw": 14,
    },
    "base384": {
        "hidden_size": 768,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "original_hw": 24,
    },
}
HEADS: tuple[str, ...] = ("new", "audioset")
LAYER_NORM_EPS = 1e-6
PATCH_SIZE = 16
AUDIOSET_NUM_LABELS = 527
AST_MODEL_TYPE = "audio-spectrogram-transformer"

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
_ARCHITECTURE_FIELDS = (
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "num_hidden_layers",
    "patch_size",
)
_CONFIG_FIELDS = frozenset(field.name for field in dataclasses.fields(ASTConfig))


def patch_grid(input_fdim: int, input_tdim: int, fstride: int, tstride: int, patch_size: int = PATCH_SIZE):
    """``(f_dim, t_dim)``: the patch grid of an ``input_fdim`` x ``input_tdim`` spectrogram, as the original's
    ``get_shape`` (and transformers' ``ASTEmbeddings.get_shape``) computes it."""
    for name, stride in (("fstride", fstride), ("tstride", tstride)):
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"{name} must be a positive integer, got {stride!r}")
    if input_fdim < patch_size or input_tdim < patch_size:
        raise ValueError(
            f"the input ({input_fdim} mel bins x {input_tdim} frames) is smaller than one "
            f"{patch_size}x{patch_size} patch"
        )
    return (input_fdim - patch_size) // fstride + 1, (input_tdim - patch_size) // tstride + 1


def adapt_position_embeddings(
    pos_embed: torch.Tensor, source_grid: tuple[int, int], target_grid: tuple[int, int]
) -> torch.Tensor:
    """Adapt ``[1, 2 + f*t, D]`` positional embeddings from one patch grid to another, as the original does.

    The two leading rows (cls and distillation token) are kept. The grid is handled time first, then
    frequency: each axis is cut from the centre (offset ``src // 2 - n // 2``) when it shrinks or stays, and
    bilinearly resized (``align_corners=False``) when it grows. Tokens are frequency-major
    (token = f * t_dim + t).
    Written by hand because transformers' AST has no positional-embedding interpolation.
    """
    f_src, t_src = source_grid
    f_dim, t_dim = target_grid
    hidden = pos_embed.shape[-1]
    if pos_embed.dim() != 3 or pos_embed.shape[1] != f_src * t_src + 2:
        raise ValueError(
            f"positional embeddings of shape {tuple(pos_embed.shape)} do not fit a {f_src}x{t_src} patch "
            f"grid (expected [1, {f_src * t_src + 2}, D])"
        )
    grid = pos_embed[:, 2:].reshape(1, f_src, t_src, hidden).permute(0, 3, 1, 2)
    if t_dim <= t_src:
        start = t_src // 2 - t_dim // 2
        grid = grid[:, :, :, start : start + t_dim]
    else:
        grid = F.interpolate(grid, size=(f_src, t_dim), mode="bilinear", align_corners=False)
    if f_dim <= f_src:
        start = f_src // 2 - f_dim // 2
        grid = grid[:, :, start : start + f_dim, :]
    else:
        grid = F.interpolate(grid, size=(f_dim, t_dim), mode="bilinear", align_corners=False)
    return torch.cat([pos_embed[:, :2], grid.flatten(2).transpose(1, 2)], dim=1).contiguous()


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


def build_ast(
    label_dim: int = 6,
    fstride: int = 10,
    tstride: int = 10,
    input_fdim: int = 128,
    input_tdim: int = 512,
    imagenet_pretrain: Any = None,
    audioset_pretrain: Any = None,
    model_size: str = "base384",
    head: str = "new",
    labels: Sequence[str] | None = None,
    **config_overrides: Any,
) -> ASTForAudioClassification:
    """An AST classifier with the original ``ASTModel``'s arguments, as an ``ASTForAudioClassification``.

    - ``label_dim`` classes named by ``labels`` (default: the six VocalSound classes when ``label_dim == 6``);
      ``fstride``/``tstride`` patch strides; ``input_fdim`` mel bins x ``input_tdim`` frames.
    - ``model_size``: a ``MODEL_SIZES`` preset; ``config_overrides`` are further ``ASTConfig`` fields (e.g.
      ``num_hidden_layers=4``, ``hidden_dropout_prob=0.1``). With pretrained weights, architecture overrides
      must agree with them.
    - ``imagenet_pretrain``: a distilled DeiT (timm state dict or file, or an HF DeiT model, directory or Hub
      id): the patch conv is summed over RGB, the cls/distillation tokens are kept and the positional grid is
      adapted as the original does.
    - ``audioset_pretrain``: an AST checkpoint (HF directory or Hub id such as
      ``MIT/ast-finetuned-audioset-10-10-0.4593``, an ``ASTForAudioClassification``, or an original ``.pth``);
      its positional grid is adapted to ``input_fdim`` x ``input_tdim``. Its strides must equal
      ``fstride`` and ``tstride``.
    - ``head``: ``"new"`` (a fresh head, PyTorch's default init as in the original) or ``"audioset"`` (needs
      ``audioset_pretrain``: the six VocalSound rows of the 527-way AudioSet head, LayerNorm kept, which
      is a zero-shot VocalSound classifier). The AudioSet head was trained with sigmoid outputs; get those
      scores with ``pipeline(..., function_to_apply="sigmoid")`` or ``torch.sigmoid(logits)``.

    The model is returned in eval mode, as ``from_pretrained`` returns it.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    if imagenet_pretrain is not None and audioset_pretrain is not None:
        raise ValueError(
            "pass imagenet_pretrain or audioset_pretrain, not both: the AudioSet checkpoint already holds "
            "the ImageNet-initialised model it was trained from"
        )
    if head == "audioset":
        if audioset_pretrain is None:
            raise ValueError(
                'head="audioset" takes its rows from an AudioSet checkpoint: pass audioset_pretrain'
            )
        if list(labels or CLASS_NAMES) != list(CLASS_NAMES) or label_dim != len(CLASS_NAMES):
            raise ValueError(
                f'head="audioset" builds the {len(CLASS_NAMES)} VocalSound classes {list(CLASS_NAMES)}, '
                f"but label_dim={label_dim} and labels={labels}"
            )
    config = ast_config(
        label_dim, fstride, tstride, input_fdim, input_tdim, model_size, labels, **config_overrides
    )
    # Sources are read and checked before the model is allocated, so a mismatch fails fast.
    encoder_state, head_state, init = None, None, "random"
    if audioset_pretrain is not None:
        init = "AudioSet"
        name = _describe(audioset_pretrain)
        source = _audioset_source(audioset_pretrain)
        encoder_state = _audioset_encoder(source, config, name, config_overrides)
        if head == "audioset":
            head_state = _audioset_rows(source, name)
        del source
    elif imagenet_pretrain is not None:
        init = "ImageNet"
        original_hw = MODEL_SIZES[model_size]["original_hw"]
        encoder_state = _imagenet_encoder(imagenet_pretrain, original_hw, config, config_overrides)
    model = ASTForAudioClassification(config)
    if encoder_state is not None:
        model.audio_spectrogram_transformer.load_state_dict(encoder_state, strict=True)
    else:
        # The original (timm) draws positions and tokens from trunc_normal(0.02); transformers zeroes them,
        # which would leave the cls and distillation tokens identical for the whole of training.
        embeddings = model.audio_spectrogram_transformer.embeddings
        for parameter in (
            embeddings.cls_token,
            embeddings.distillation_token,
            embeddings.position_embeddings,
        ):
            torch.nn.init.trunc_normal_(parameter.data, std=0.02)
    if head_state is not None:
        model.classifier.load_state_dict(head_state, strict=True)
    else:
        # The original's fresh head is nn.Sequential(LayerNorm, Linear) with PyTorch's default init.
        model.classifier.layernorm.reset_parameters()
        model.classifier.dense.reset_parameters()
    f_dim, t_dim = _grid(config)
    logger.info(
        "built AST %s: %d layers, width %d, %dx%d patch grid (stride %d/%d), %d labels, %s init, %s head, "
        "%.2fM parameters",
        model_size,
        config.num_hidden_layers,
        config.hidden_size,
        f_dim,
        t_dim,
        fstride,
        tstride,
        label_dim,
        init,
        head,
        model.num_parameters() / 1e6,
    )
    return model.eval()


def init_model_dir(
    out_dir: str | os.PathLike,
    *,
    model_size: str = "base384",
    input_tdim: int = 512,
    input_fdim: int = 128,
    fstride: int = 10,
    tstride: int = 10,
    imagenet_pretrain: Any = None,
    audioset_pretrain: Any = None,
    head: str = "new",
    labels: Sequence[str] | None = None,
    norm_mean: float = PAPER_NORM_MEAN,
    norm_std: float = PAPER_NORM_STD,
    seed: int | None = None,
    **config_overrides: Any,
) -> Path:
    """Build an AST with ``build_ast`` and save it, with its feature extractor, to a new ``out_dir``.

    The feature extractor is ``make_feature_extractor(max_length=input_tdim, mean=norm_mean, std=norm_std)``
    (the paper's normalisation by default). ``seed`` makes the random parts (new head, unpretrained
    weights) reproducible without disturbing the caller's global RNG. ``labels`` default to the six VocalSound
    classes. The directory loads with plain transformers (``AutoModelForAudioClassification``,
    ``AutoFeatureExtractor``, ``pipeline("audio-classification")``). Returns ``out_dir``.
    """
    build_kwargs = dict(
        label_dim=len(labels) if labels is not None else len(CLASS_NAMES),
        fstride=fstride,
        tstride=tstride,
        input_fdim=input_fdim,
        input_tdim=input_tdim,
        imagenet_pretrain=imagenet_pretrain,
        audioset_pretrain=audioset_pretrain,
        model_size=model_size,
        head=head,
        labels=labels,
        **config_overrides,
    )
    if seed is None:
        model = build_ast(**build_kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_ast(**build_kwargs)
    extractor = make_feature_extractor(
        max_length=input_tdim, mean=norm_mean, std=norm_std, num_mel_bins=input_fdim
    )
    return save_model_dir(model, extractor, out_dir)


def save_model_dir(model: ASTForAudioClassification, feature_extractor, out_dir: str | os.PathLike) -> Path:
    """Save a model (safetensors) and its feature extractor to ``out_dir`` atomically; returns ``out_dir``.

    Everything is written to a temporary sibling directory that is renamed into place, so ``out_dir`` never
    holds half a model. ``out_dir`` must not exist or be empty. Raises ``ValueError`` if the feature
    extractor's ``max_length`` / ``num_mel_bins`` disagree with the model's.
    """
    out_dir = Path(out_dir)
    config = model.config
    for name in ("max_length", "num_mel_bins"):
        if getattr(feature_extractor, name) != getattr(config, name):
            raise ValueError(
                f"the feature extractor's {name} ({getattr(feature_extractor, name)}) differs from the "
                f"model's ({getattr(config, name)})"
            )
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} already exists and is not an empty directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # A sibling on the same file system, so the final rename is atomic; mkdir (not mkdtemp) keeps the umask's
    # permissions.
    tmp = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    try:
        model.save_pretrained(tmp)
        feature_extractor.save_pretrained(tmp)
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info(
        "saved %s (%d labels, %d frames, mean %.7g, std %.7g) to %s",
        type(model).__name__,
        config.num_labels,
        config.max_length,
        feature_extractor.mean,
        feature_extractor.std,
        out_dir,
    )
    return out_dir


def _describe(source: Any) -> str:
    return type(source).__name__ if isinstance(source, torch.nn.Module | Mapping) else str(source)


def _check_architecture(config: ASTConfig, found: Mapping[str, Any], source: str, overrides: Mapping) -> None:
    """Refuse a config whose architecture contradicts the pretrained weights, naming both sides."""
    for name, value in found.items():
        if getattr(config, name) != value:
            origin = "your override" if name in overrides else "the model_size preset"
            raise ValueError(
                f"{name}={getattr(config, name)} ({origin}) contradicts the pretrained weights of {source}, "
                f"which have {name}={value}"
            )


def _audioset_source(source: Any) -> ASTForAudioClassification:
    """The AST model ``audioset_pretrain`` names: a model, an original .pth, an HF directory or a Hub id."""
    if isinstance(source, ASTForAudioClassification):
        return source
    if isinstance(source, str | os.PathLike) and Path(source).is_file():
        # conversion builds on this module (ast_config, timm_to_ast), so it is imported where it is needed.
        from .conversion import load_original_model

        return load_original_model(source)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source)
    if config.model_type != AST_MODEL_TYPE:
        raise ValueError(
            f"audioset_pretrain {source} is a {config.model_type!r} model, expected {AST_MODEL_TYPE!r}"
        )
    return ASTForAudioClassification.from_pretrained(source, config=config)


def _audioset_encoder(
    source: ASTForAudioClassification, config: ASTConfig, name: str, overrides: Mapping
) -> dict[str, torch.Tensor]:
    """An AST checkpoint's encoder for ``config``, positional grid adapted as the original does."""
    src = source.config
    for ours, theirs, argument in (
        (config.frequency_stride, src.frequency_stride, "fstride"),
        (config.time_stride, src.time_stride, "tstride"),
    ):
        if ours != theirs:
            # The original keeps the checkpoint's conv stride but sizes the grid by the requested one.
            raise ValueError(
                f"{argument}={ours} differs from the AudioSet checkpoint {name}, which was trained with "
                f"{argument}={theirs}; use {argument}={theirs} or start from ImageNet weights"
            )
    _check_architecture(config, {k: getattr(src, k) for k in _ARCHITECTURE_FIELDS}, name, overrides)
    state = dict(source.audio_spectrogram_transformer.state_dict())
    key = "embeddings.position_embeddings"
    state[key] = adapt_position_embeddings(state[key], _grid(src), _grid(config))
    return state


def _audioset_rows(source: ASTForAudioClassification, name: str) -> dict[str, torch.Tensor]:
    """The VocalSound head: rows ``release.AUDIOSET_INDICES`` of the AudioSet head, LayerNorm kept."""
    src = source.config
    if src.num_labels != AUDIOSET_NUM_LABELS:
        raise ValueError(
            f'head="audioset" needs a {AUDIOSET_NUM_LABELS}-way AudioSet head, but {name} has '
            f"{src.num_labels} labels"
        )
    for index, class_name in zip(AUDIOSET_INDICES, CLASS_NAMES):
        found = src.id2label.get(index, "")
        # Converted checkpoints without a label CSV carry transformers' placeholder names.
        if found != f"LABEL_{index}" and found.lower() != class_name.lower():
            raise ValueError(
                f"{name} names AudioSet output {index} {found!r}, expected {class_name!r}: "
                "not the AudioSet order"
            )
    rows = torch.tensor(AUDIOSET_INDICES)
    head = source.classifier
    return {
        "layernorm.weight": head.layernorm.weight.detach().clone(),
        "layernorm.bias": head.layernorm.bias.detach().clone(),
        "dense.weight": head.dense.weight.detach()[rows],
        "dense.bias": head.dense.bias.detach()[rows],
    }


def _imagenet_encoder(
    source: Any, original_hw: int, config: ASTConfig, overrides: Mapping
) -> dict[str, torch.Tensor]:
    """A distilled DeiT as the original's ImageNet initialisation uses it: RGB-summed conv, adapted grid."""
    name = _describe(source)
    state, found = _deit_state(source, name)
    num_tokens = state["embeddings.position_embeddings"].shape[1]
    hw = math.isqrt(num_tokens - 2)
    if hw * hw + 2 != num_tokens:
        raise ValueError(f"{name} has no square positional grid ({num_tokens} tokens): not a distilled DeiT")
    if hw != original_hw:
        raise ValueError(
            f"the model_size preset expects a {original_hw}x{original_hw} DeiT positional grid, but {name} "
            f"has {hw}x{hw}"
        )
    _check_architecture(config, found, name, overrides)
    conv = state["embeddings.patch_embeddings.projection.weight"]
    if conv.shape[1] != 3:
        raise ValueError(f"{name}'s patch conv has {conv.shape[1]} input channels, expected 3 (RGB)")
    state["embeddings.patch_embeddings.projection.weight"] = conv.sum(dim=1, keepdim=True)
    key = "embeddings.position_embeddings"
    state[key] = adapt_position_embeddings(state[key], (hw, hw), _grid(config))
    return state


def _grid(config: ASTConfig) -> tuple[int, int]:
    return patch_grid(
        config.num_mel_bins, config.max_length, config.frequency_stride, config.time_stride, config.patch_size
    )


def _deit_state(source: Any, name: str) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """A DeiT's encoder in ``ASTModel`` names, and the architecture its weights imply."""
    from transformers import PreTrainedModel

    if isinstance(source, str | os.PathLike) and Path(source).is_file():
        from .conversion import read_state_dict

        source = read_state_dict(source)
    if isinstance(source, Mapping):
        # Facebook's DeiT releases wrap the timm state dict in {"model": ...} (read_state_dict unwraps files).
        if "model" in source and isinstance(source["model"], Mapping):
            source = source["model"]
        for key in ("cls_token", "dist_token", "pos_embed", "patch_embed.proj.weight"):
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
    if not isinstance(source, PreTrainedModel):
        from transformers import AutoConfig, DeiTModel

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
    found = {k: getattr(source.config, k) for k in _ARCHITECTURE_FIELDS}
    return state, found
