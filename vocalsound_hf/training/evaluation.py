"""Metrics of a whole split, predictions gathered from every rank, subgroups included."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import torch
from torch.nn import functional as F
from transformers import Trainer
from transformers.trainer_utils import EvalPrediction, PredictionOutput

from ..metrics import classification_metrics
from .splits import clip_metadata


class SplitMetrics:
    """``compute_metrics`` for the Trainer: every metric of one split, subgroups included.

    The Trainer gathers predictions from every rank in dataset order (uneven splits too), so ``metadata``
    (the split's :func:`clip_metadata`) is aligned by position. With ``scalars_only`` (for the evaluations
    the Trainer logs during training) the confusion matrix and subgroup sizes are left out. It runs on
    every rank; only the main process writes or prints.
    """

    def __init__(
        self,
        metric,
        class_names: Sequence[str],
        metadata: Mapping[str, Sequence[Any]] | None,
        *,
        scalars_only: bool = True,
    ):
        self.metric, self.class_names, self.metadata = metric, list(class_names), metadata
        self.scalars_only = scalars_only

    def __call__(self, prediction: EvalPrediction) -> dict[str, Any]:
        results = classification_metrics(
            self.metric, prediction.predictions, prediction.label_ids, self.class_names, self.metadata
        )
        if self.scalars_only:
            return {k: v for k, v in results.items() if isinstance(v, float) and not k.startswith("samples_")}
        return {**results, "samples": int(len(prediction.label_ids))}


def predict_split(trainer: Trainer, split: datasets.Dataset, name: str, metric) -> PredictionOutput:
    """``trainer.predict`` on ``split`` with every metric of it, the split's own metadata passed explicitly."""
    config = trainer.model.config
    class_names = [config.id2label[i] for i in range(config.num_labels)]
    during_training = trainer.compute_metrics
    trainer.compute_metrics = SplitMetrics(metric, class_names, clip_metadata(split), scalars_only=False)
    try:
        return trainer.predict(split, metric_key_prefix=name)
    finally:
        trainer.compute_metrics = during_training


def evaluate_split(
    trainer: Trainer, split: datasets.Dataset, name: str, metric, prefix: str = ""
) -> dict[str, Any]:
    """Every metric of ``split`` (predictions gathered from all ranks) with keys ``{prefix}{name}_...``.

    Includes ``{name}_samples`` (clips evaluated, each exactly once) and ``{name}_loss``, the mean
    cross-entropy over the clips. The Trainer's own loss averages per-batch means, including the clips that
    pad the last batch of each rank, so it changes slightly with the number of processes; this one does not.
    """
    output = predict_split(trainer, split, name, metric)
    results = dict(output.metrics)
    logits = torch.as_tensor(output.predictions, dtype=torch.float32)
    labels = torch.as_tensor(output.label_ids, dtype=torch.long)
    results[f"{name}_loss"] = F.cross_entropy(logits, labels).item()
    return {f"{prefix}{key}": value for key, value in results.items()}
