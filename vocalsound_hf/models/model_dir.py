"""A model and its feature extractor saved as one transformers directory, never half written."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from transformers import ASTForAudioClassification

from ..fileio import staged_path

logger = logging.getLogger(__name__)


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
    with staged_path(out_dir) as tmp:
        tmp.mkdir()
        model.save_pretrained(tmp)
        feature_extractor.save_pretrained(tmp)
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
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
