"""Checkpoint weights read under the model's own key names, and the original recipe's weight averaging."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import Trainer

from .evaluation import evaluate_split


def checkpoint_state(model_class, checkpoint: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A checkpoint's weights with the key names of ``model_class``, read through ``from_pretrained``.

    ``save_pretrained`` writes AST's original key layout (``encoder.layer.0.attention.attention.query``) while
    the module names it ``layers.0.attention.q_proj``; ``from_pretrained`` maps one onto the other.
    """
    return model_class.from_pretrained(str(checkpoint)).state_dict()


def load_weights(model: torch.nn.Module, checkpoint: str | os.PathLike) -> None:
    """Load a saved checkpoint's weights into ``model`` in place, strictly (every tensor must match)."""
    model.load_state_dict(checkpoint_state(type(model), checkpoint))


def epoch_checkpoints(output_dir: str | os.PathLike, start: int, end: int) -> list[Path]:
    """The checkpoints saved at the end of epochs ``start`` to ``end`` (1-based, inclusive), in epoch order."""
    found: dict[int, Path] = {}
    for folder in Path(output_dir).glob("checkpoint-*"):
        state = folder / "trainer_state.json"
        if state.is_file():
            epoch = json.loads(state.read_text()).get("epoch")
            if epoch is not None and abs(epoch - round(epoch)) < 1e-6:
                found[round(epoch)] = folder
    missing = [e for e in range(start, end + 1) if e not in found]
    if missing:
        raise FileNotFoundError(
            f"weight averaging needs the checkpoints of epochs {start}-{end} in {output_dir}; missing epochs {missing} "
            "(save every epoch with save_strategy epoch and no save_total_limit)"
        )
    return [found[e] for e in range(start, end + 1)]


def average_weights(model_class, checkpoints: Sequence[Path]) -> dict[str, torch.Tensor]:
    """The mean of the checkpoints' weights, tensor by tensor, as the original's ``--wa`` computes it."""
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for checkpoint in checkpoints:
        state = checkpoint_state(model_class, checkpoint)
        for key, tensor in state.items():
            dtypes.setdefault(key, tensor.dtype)
            total[key] = total.get(key, 0) + tensor.to(torch.float64)
    return {key: (value / len(checkpoints)).to(dtypes[key]) for key, value in total.items()}


def evaluate_weight_average(
    trainer: Trainer,
    splits: Mapping[str, datasets.Dataset],
    metric,
    results: dict[str, Any],
    start: int,
    end: int,
) -> None:
    """Evaluate the weight average of epochs ``start``-``end`` into ``results`` (keys ``wa_...``) and keep it
    as the model if its validation accuracy beats the selected checkpoint's, like any other checkpoint.

    When it wins, the unprefixed validation and test metrics become the average's and ``selected_model`` says so;
    otherwise the trainer's model is put back as it was.
    """
    kept = {key: value.clone() for key, value in trainer.model.state_dict().items()}
    checkpoints = epoch_checkpoints(trainer.args.output_dir, start, end)
    trainer.model.load_state_dict(average_weights(type(trainer.model), checkpoints))
    for name in ("validation", "test"):
        results.update(evaluate_split(trainer, splits[name], name, metric, prefix="wa_"))
    if results["wa_validation_accuracy"] > results["validation_accuracy"]:
        results["selected_model"] = f"the weight average of epochs {start}-{end}"
        for key in [k for k in results if k.startswith(("validation_", "test_"))]:
            results[key] = results["wa_" + key]
    else:
        trainer.model.load_state_dict(kept)
