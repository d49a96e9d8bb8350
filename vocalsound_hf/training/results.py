"""A run's result files: ``results.json`` (every metric), the original's result table, per-clip predictions."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from ..fileio import write_text_atomically

RESULTS_FILE = "results.json"
EVAL_RESULT_FILE = "all_eval_result.csv"
WA_EVAL_RESULT_FILE = "wa_eval_result.csv"
PREDICTIONS_FILE = "predictions_test.csv"

# The paper's result table: (key in results.json, column of the original's all_eval_result.csv, column of
# the model card's subgroup table).
RESULT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("validation_accuracy", "validation", "validation"),
    ("test_accuracy", "all_test", "all test"),
    ("test_accuracy_age_18_25", "test age 18-25", "age 18-25"),
    ("test_accuracy_age_26_48", "test age 26-48", "age 26-48"),
    ("test_accuracy_age_49_80", "test age 49-80", "age 49-80"),
    ("test_accuracy_female", "test female", "female"),
    ("test_accuracy_male", "test male", "male"),
)
EVAL_RESULT_HEADER = ",".join(column for _, column, _ in RESULT_COLUMNS)


def _json_safe(value: Any) -> Any:
    """NaN and infinity become ``None``/strings so that ``results.json`` is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def eval_result_row(results: Mapping[str, Any], prefix: str = "") -> str:
    """One row of ``all_eval_result.csv`` (``EVAL_RESULT_HEADER``); ``nan`` for an empty subgroup."""
    values = [results.get(prefix + key) for key, _, _ in RESULT_COLUMNS]
    return ",".join("nan" if v is None else f"{v:.6f}" for v in values)


def write_results(output_dir: str | os.PathLike, results: Mapping[str, Any]) -> None:
    """Write ``results.json`` and ``all_eval_result.csv`` (and ``wa_eval_result.csv`` with weight averaging)."""
    output_dir = Path(output_dir)
    write_text_atomically(output_dir / RESULTS_FILE, json.dumps(_json_safe(dict(results)), indent=2) + "\n")
    for prefix, name in (("", EVAL_RESULT_FILE), ("wa_", WA_EVAL_RESULT_FILE)):
        if f"{prefix}test_accuracy" in results:
            write_text_atomically(
                output_dir / name, f"{EVAL_RESULT_HEADER}\n{eval_result_row(results, prefix)}\n"
            )


def write_predictions(
    path: Path, split: datasets.Dataset, logits: np.ndarray, class_names: Sequence[str]
) -> None:
    """Per-clip predictions with softmax probabilities, as CSV: file, label, prediction, then one column per class."""
    probabilities = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()
    label_names = split.features["label"].names
    file_names = (
        list(split["file_name"]) if "file_name" in split.column_names else [str(i) for i in range(len(split))]
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file_name", "label", "prediction", *class_names])
    for name, label, row in zip(file_names, split.with_format(None)["label"], probabilities):
        writer.writerow(
            [name, label_names[label], class_names[int(row.argmax())], *(f"{p:.6f}" for p in row)]
        )
    write_text_atomically(path, buffer.getvalue())
