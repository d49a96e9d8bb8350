"""Original AST checkpoints (YuanGongND/ast ``.pth``) as transformers ``ASTForAudioClassification`` dirs.

The model comes from ``original.load_original_model``; this module adds the label names (from the original
repository's label CSVs) and the feature extractor with the normalisation of the recipe the checkpoint was
trained with. Checkpoints from other recipes need ``norm_mean``/``norm_std`` given explicitly.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from ..features import make_feature_extractor
from ..release import CLASS_NAMES, PAPER_NORM_MEAN, PAPER_NORM_STD
from .config import config_grid
from .model_dir import save_model_dir
from .original import load_original_model
from .presets import AUDIOSET_NUM_LABELS

logger = logging.getLogger(__name__)

AUDIOSET_NORM = (-4.2677393, 4.5689974)
SPEECH_COMMANDS_NORM = (-6.845978, 5.5654526)
SPEECH_COMMANDS_NUM_LABELS = 35


def read_label_csv(path: str | os.PathLike) -> list[str]:
    """Class names from an ``index,mid,display_name`` CSV (the original AST's label files), in index order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no label CSV file at {path}")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path} is not a label CSV (UTF-8 text): {err}") from err
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
        f_dim, t_dim = config_grid(config)
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
