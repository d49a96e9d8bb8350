"""``build_ast`` and ``init_model_dir``: an AST classifier from scratch or with the original initialisations.

What the original AST has and transformers lacks: the DeiT ``model_size`` presets, ImageNet (DeiT) and
AudioSet initialisation with the original positional-embedding adaptation, and a VocalSound head taken from
the AudioSet head. Everything built here saves and loads with plain transformers.

Scores: VocalSound is single-label (``problem_type="single_label_classification"``, softmax in
``pipeline("audio-classification")``). AudioSet heads were trained multi-label: for sigmoid scores, call
``pipeline("audio-classification", model=..., function_to_apply="sigmoid")`` or apply ``torch.sigmoid`` to
the logits.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import ASTConfig, ASTForAudioClassification, AutoConfig

from ..features import make_feature_extractor
from ..release import AUDIOSET_INDICES, CLASS_NAMES, PAPER_NORM_MEAN, PAPER_NORM_STD
from .checkpoints import deit_state, hub_failure, missing_location
from .config import ARCHITECTURE_FIELDS, ast_config, config_grid
from .model_dir import save_model_dir
from .original import load_original_model
from .position_embeddings import adapt_position_embeddings
from .presets import AST_MODEL_TYPE, AUDIOSET_NUM_LABELS, HEADS, MODEL_SIZES

logger = logging.getLogger(__name__)

_POSITION_EMBEDDINGS = "embeddings.position_embeddings"
_PATCH_CONV = "embeddings.patch_embeddings.projection.weight"


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
    _check_sources(label_dim, labels, head, imagenet_pretrain, audioset_pretrain)
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
    _initialise(model, encoder_state, head_state)
    f_dim, t_dim = config_grid(config)
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


def _check_sources(
    label_dim: int, labels: Sequence[str] | None, head: str, imagenet_pretrain: Any, audioset_pretrain: Any
) -> None:
    """Refuse a head or a combination of pretrained sources that ``build_ast`` cannot honour."""
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


def _initialise(
    model: ASTForAudioClassification,
    encoder_state: Mapping[str, torch.Tensor] | None,
    head_state: Mapping[str, torch.Tensor] | None,
) -> None:
    """Load the pretrained encoder and head where given; otherwise initialise them as the original does."""
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
        return load_original_model(source)
    problem = missing_location(source)
    if problem is not None:
        raise FileNotFoundError(f"audioset_pretrain {source}: {problem}")
    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as err:
        if Path(str(source)).exists():
            raise
        raise FileNotFoundError(f"audioset_pretrain {source}: {hub_failure(err)}") from None
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
    _check_architecture(config, {k: getattr(src, k) for k in ARCHITECTURE_FIELDS}, name, overrides)
    state = dict(source.audio_spectrogram_transformer.state_dict())
    state[_POSITION_EMBEDDINGS] = adapt_position_embeddings(
        state[_POSITION_EMBEDDINGS], config_grid(src), config_grid(config)
    )
    return state


def _audioset_head_problem(config: ASTConfig, name: str) -> str | None:
    """Why ``config``'s head is not AudioSet's 527 classes in AudioSet's order, or ``None`` if it is."""
    if config.num_labels != AUDIOSET_NUM_LABELS:
        return (
            f'head="audioset" needs a {AUDIOSET_NUM_LABELS}-way AudioSet head, but {name} has '
            f"{config.num_labels} labels"
        )
    for index, class_name in zip(AUDIOSET_INDICES, CLASS_NAMES):
        found = config.id2label.get(index, "")
        # Converted checkpoints without a label CSV carry transformers' placeholder names.
        if found != f"LABEL_{index}" and found.lower() != class_name.lower():
            return f"{name} names AudioSet output {index} {found!r}, expected {class_name!r}: not the AudioSet order"
    return None


def _audioset_rows(source: ASTForAudioClassification, name: str) -> dict[str, torch.Tensor]:
    """The VocalSound head: rows ``release.AUDIOSET_INDICES`` of the AudioSet head, LayerNorm kept."""
    problem = _audioset_head_problem(source.config, name)
    if problem:
        raise ValueError(problem)
    rows = torch.tensor(AUDIOSET_INDICES)
    head = source.classifier
    return {
        "layernorm.weight": head.layernorm.weight.detach().clone(),
        "layernorm.bias": head.layernorm.bias.detach().clone(),
        "dense.weight": head.dense.weight.detach()[rows],
        "dense.bias": head.dense.bias.detach()[rows],
    }


def is_audioset_head(config: ASTConfig) -> bool:
    """Whether a model's head is AudioSet's 527 classes (named, or with transformers' placeholder names)."""
    return _audioset_head_problem(config, "the model") is None


def zero_shot_vocalsound(source: ASTForAudioClassification) -> ASTForAudioClassification:
    """An AudioSet AST restricted to the six VocalSound classes: its encoder as it is, the six rows of its
    head (``release.AUDIOSET_INDICES``) with sigmoid scores, as it was trained (multi-label)."""
    config = ASTConfig.from_dict(
        {
            **source.config.to_dict(),
            "num_labels": len(CLASS_NAMES),
            "id2label": dict(enumerate(CLASS_NAMES)),
            "label2id": {name: i for i, name in enumerate(CLASS_NAMES)},
            "problem_type": "multi_label_classification",
        }
    )
    model = ASTForAudioClassification(config)
    model.audio_spectrogram_transformer.load_state_dict(source.audio_spectrogram_transformer.state_dict())
    model.classifier.load_state_dict(_audioset_rows(source, _describe(source)))
    return model.to(source.device).eval()


def _imagenet_encoder(
    source: Any, original_hw: int, config: ASTConfig, overrides: Mapping
) -> dict[str, torch.Tensor]:
    """A distilled DeiT as the original's ImageNet initialisation uses it: RGB-summed conv, adapted grid."""
    name = _describe(source)
    state, found = deit_state(source, name)
    num_tokens = state[_POSITION_EMBEDDINGS].shape[1]
    hw = math.isqrt(num_tokens - 2)
    if hw * hw + 2 != num_tokens:
        raise ValueError(f"{name} has no square positional grid ({num_tokens} tokens): not a distilled DeiT")
    if hw != original_hw:
        raise ValueError(
            f"the model_size preset expects a {original_hw}x{original_hw} DeiT positional grid, but {name} "
            f"has {hw}x{hw}"
        )
    _check_architecture(config, found, name, overrides)
    conv = state[_PATCH_CONV]
    if conv.shape[1] != 3:
        raise ValueError(f"{name}'s patch conv has {conv.shape[1]} input channels, expected 3 (RGB)")
    state[_PATCH_CONV] = conv.sum(dim=1, keepdim=True)
    state[_POSITION_EMBEDDINGS] = adapt_position_embeddings(
        state[_POSITION_EMBEDDINGS], (hw, hw), config_grid(config)
    )
    return state
