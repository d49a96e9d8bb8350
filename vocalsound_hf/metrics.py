"""Evaluation metrics of VocalSound models: the shipped ``evaluate`` module plus accuracy per metadata subgroup.

``evaluate.load("accuracy")`` needs the Hub, so the project ships its own ``evaluate.Metric`` module
(``vocalsound_metrics/``), loadable by path offline and by Hub id once pushed. Subgroup accuracy needs
each clip's speaker metadata, which a metric module never sees, so it lives here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .release import AGE_GROUPS

METRIC_DIR = Path(__file__).resolve().parent / "vocalsound_metrics"

# Metadata columns that define the paper's subgroups; the collator keeps them out of the model inputs.
METADATA_COLUMNS: tuple[str, ...] = ("age_group", "gender", "health_condition")


def slug(name: str) -> str:
    """The key form of a class or group name: lower case, runs of other characters as one underscore."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


# Subgroup key -> (metadata column, value). Health "no" means no health problem in the release's metadata.
SUBGROUPS: dict[str, tuple[str, str]] = {
    **{f"age_{slug(name)}": ("age_group", name) for name, _, _ in AGE_GROUPS},
    "female": ("gender", "female"),
    "male": ("gender", "male"),
    "healthy": ("health_condition", "no"),
}
# The one subgroup defined by exclusion: every clip whose health condition is known and is not "no".
UNHEALTHY = "unhealthy"


def load_metric(**kwargs: Any):
    """The project's ``evaluate`` metric module, loaded from the installed package (works offline)."""
    import evaluate

    return evaluate.load(str(METRIC_DIR), **kwargs)


def subgroup_masks(metadata: Mapping[str, Sequence[Any]], num_clips: int) -> dict[str, np.ndarray]:
    """Boolean mask of each subgroup (``SUBGROUPS`` plus ``unhealthy``) over ``num_clips`` clips.

    ``metadata`` maps column names to per-clip values (strings; ``None`` when unknown). A column that is
    missing leaves its subgroups empty; a column of the wrong length is an error, because the masks would
    silently pair clips with another clip's metadata.
    """
    columns = {}
    for column in METADATA_COLUMNS:
        if column not in metadata:
            continue
        values = np.asarray([None if v is None else str(v) for v in metadata[column]], dtype=object)
        if len(values) != num_clips:
            raise ValueError(
                f"metadata column {column!r} has {len(values)} values for {num_clips} predictions; "
                "predictions and metadata must list the same clips in the same order"
            )
        columns[column] = values
    masks = {}
    for key, (column, value) in SUBGROUPS.items():
        masks[key] = columns[column] == value if column in columns else np.zeros(num_clips, dtype=bool)
    health = columns.get("health_condition")
    masks[UNHEALTHY] = (
        np.array([v is not None and v != "no" for v in health], dtype=bool)
        if health is not None
        else np.zeros(num_clips, dtype=bool)
    )
    return masks


def subgroup_accuracy(
    predicted: Sequence[int], labels: Sequence[int], metadata: Mapping[str, Sequence[Any]]
) -> dict[str, float | int | None]:
    """Accuracy and clip count of every subgroup: ``accuracy_<key>`` (``None`` when empty) and ``samples_<key>``.

    Keys: ``age_18_25``, ``age_26_48``, ``age_49_80``, ``female``, ``male``, ``healthy``, ``unhealthy``.
    """
    predicted = np.asarray(predicted)
    labels = np.asarray(labels)
    if predicted.shape != labels.shape:
        raise ValueError(f"{len(predicted)} predictions for {len(labels)} labels")
    results: dict[str, float | int | None] = {}
    for key, mask in subgroup_masks(metadata, len(labels)).items():
        count = int(mask.sum())
        results[f"accuracy_{key}"] = float((predicted[mask] == labels[mask]).mean()) if count else None
        results[f"samples_{key}"] = count
    return results


def classification_metrics(
    metric,
    logits: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    metadata: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Every metric of one split as a flat dict.

    Keys: ``accuracy``, ``macro_f1``, ``map``, ``mauc``, ``d_prime``, ``accuracy_<class>`` (e.g.
    ``accuracy_throat_clearing``), ``confusion_matrix`` (a nested list) and, with ``metadata``, the
    subgroup keys of :func:`subgroup_accuracy`.
    """
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    scores = metric.compute(predictions=logits, references=labels, num_classes=len(class_names))
    results: dict[str, Any] = {key: scores[key] for key in ("accuracy", "macro_f1", "map", "mauc", "d_prime")}
    for name, value in zip(class_names, scores["per_class_accuracy"]):
        results[f"accuracy_{slug(name)}"] = None if np.isnan(value) else value
    results["confusion_matrix"] = scores["confusion_matrix"]
    if metadata is not None:
        results.update(subgroup_accuracy(logits.argmax(axis=1), labels, metadata))
    return results
