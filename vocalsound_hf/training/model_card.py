"""The model card of a trained model: Hub metadata with a ``model-index``, then the ``model_card.md`` text."""

from __future__ import annotations

import math
import os
import string
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..fileio import write_text_atomically
from ..metrics import slug
from ..release import CITATION, CLASS_NAMES, LICENSE
from .results import RESULT_COLUMNS

CARD_TEMPLATE = "model_card.md"
# (key suffix in results.json, metric type and name in the model-index) of the headline test metrics.
_INDEX_METRICS = (("accuracy", "accuracy", "Accuracy"), ("macro_f1", "f1", "Macro F1"), ("map", "map", "mAP"))


def _percent(value: Any) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"
    )


def subgroup_table(results: Mapping[str, Any], prefix: str = "") -> str:
    """Accuracy (%) per subgroup as a Markdown table in the paper's layout (the columns of ``all_eval_result.csv``)."""
    labels = [label for _, _, label in RESULT_COLUMNS]
    values = " | ".join(_percent(results.get(prefix + key)) for key, _, _ in RESULT_COLUMNS)
    return f"| {' | '.join(labels)} |\n|{'---|' * len(labels)}\n| {values} |"


def _card_data(
    results: Mapping[str, Any], model_name: str, dataset_id: str | None, base_model: str | None
) -> ModelCardData:
    eval_results = [
        EvalResult(
            task_type="audio-classification",
            task_name="Audio Classification",
            dataset_type=dataset_id or "vocalsound",
            dataset_name="VocalSound",
            dataset_split="test",
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=round(float(results[f"test_{key}"]), 4),
        )
        for key, metric_type, metric_name in _INDEX_METRICS
        if results.get(f"test_{key}") is not None
    ]
    return ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="audio-classification",
        license=LICENSE,
        tags=[
            "audio-classification",
            "audio-spectrogram-transformer",
            "vocalsound",
            "generated_from_trainer",
        ],
        datasets=[dataset_id] if dataset_id else None,
        metrics=["accuracy", "f1"],
        base_model=base_model,
        eval_results=eval_results or None,
    )


def _metrics_row(results: Mapping[str, Any], split: str) -> str:
    cells = [_percent(results.get(f"{split}_{key}")) for key in ("accuracy", "macro_f1", "map", "mauc")]
    return f"| {split} | {' | '.join(cells)} | {results.get(f'{split}_samples', 'n/a')} |"


def write_model_card(
    output_dir: str | os.PathLike,
    results: Mapping[str, Any],
    *,
    model_name: str,
    dataset_id: str | None,
    base_model: str | None,
    recipe: Mapping[str, Any],
    class_names: Sequence[str] = CLASS_NAMES,
) -> None:
    """Write ``README.md``: YAML metadata (with a ``model-index``), results, subgroup table, recipe, usage, limits."""
    card_data = _card_data(results, model_name, dataset_id, base_model)
    template = string.Template(files(__package__).joinpath(CARD_TEMPLATE).read_text(encoding="utf-8"))
    body = template.substitute(
        model_name=model_name,
        class_names=", ".join(class_names),
        dataset=dataset_id or "vocalsound",
        initialisation=f"Initialised from `{base_model}`." if base_model else "Trained from scratch.",
        selected_model=results.get("selected_model", "the checkpoint with the best validation accuracy"),
        metrics_rows="\n".join(
            _metrics_row(results, split) for split in ("validation", "test") if f"{split}_accuracy" in results
        ),
        subgroup_table=subgroup_table(results),
        healthy_accuracy=_percent(results.get("test_accuracy_healthy")),
        healthy_clips=results.get("test_samples_healthy", "n/a"),
        unhealthy_accuracy=_percent(results.get("test_accuracy_unhealthy")),
        unhealthy_clips=results.get("test_samples_unhealthy", "n/a"),
        class_rows="\n".join(
            f"| {name} | {_percent(results.get(f'test_accuracy_{slug(name)}'))} |" for name in class_names
        ),
        recipe_lines="\n".join(f"- `{key}`: `{value}`" for key, value in recipe.items()),
        citation=CITATION,
    )
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")
    write_text_atomically(Path(output_dir) / "README.md", str(card))
