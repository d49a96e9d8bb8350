"""The fbank normalisation stats of a training split: computed as the original AST does, or read from a card.

An export writes the stats into the dataset card's YAML (``norm_stats``, one entry per config), where
training reads them back instead of decoding the whole split again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import datasets
import numpy as np
import torch
from datasets.utils import tqdm as hf_tqdm
from huggingface_hub import DatasetCard
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

from ..audio import decoded_waveform
from ..features import batch_fbank
from ..release import TARGET_SAMPLING_RATE
from .builder import load_vocalsound

logger = logging.getLogger(__name__)

NORM_STATS_KEY = "norm_stats"
# Clips per batch_fbank call in compute_norm_stats: big enough to batch, small enough to stay in cache.
_FBANK_CHUNK = 32


def compute_norm_stats(
    split: datasets.Dataset | datasets.IterableDataset,
    batch_size: int = 1000,
    max_length: int = 512,
    num_mel_bins: int = 128,
) -> tuple[float, float]:
    """Fbank mean and std of a split, computed the way the original AST's ``get_norm_stats.py`` does.

    Each clip is resampled to 16 kHz (by the ``Audio`` feature), turned into a 128-bin Kaldi fbank
    (25 ms Hann window, 10 ms shift, dither 0; :func:`vocalsound_hf.features.batch_fbank`) and zero-padded
    or cut to ``max_length`` frames (the original also removes the waveform mean, which Kaldi's per-frame
    DC removal makes a no-op); the result is the mean of the per-batch means and the mean of the per-batch (unbiased)
    stds over batches of ``batch_size`` clips, the last one possibly smaller, as the original's loader.
    Unlike the original, no SpecAugment or mixup is applied: the stats describe the features the model
    actually normalises, and they are deterministic.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    split = split.select_columns(["audio"]).cast_column(
        "audio", datasets.Audio(sampling_rate=TARGET_SAMPLING_RATE)
    )
    try:
        total = len(split)
    except TypeError:  # an IterableDataset knows its size only from its info, if at all
        total = next(
            (s.num_examples for name, s in (split.info.splits or {}).items() if name == split.split), None
        )

    means, stds = _batch_stats(split, total, batch_size, max_length, num_mel_bins)
    if not means:
        raise ValueError("cannot compute norm stats of an empty split")
    mean, std = float(np.mean(means)), float(np.mean(stds))
    logger.info(
        "fbank stats over %d batches of up to %d clips: mean %.7f, std %.7f",
        len(means),
        batch_size,
        mean,
        std,
    )
    return mean, std


def _batch_stats(
    split: datasets.Dataset | datasets.IterableDataset,
    total: int | None,
    batch_size: int,
    max_length: int,
    num_mel_bins: int,
) -> tuple[list[float], list[float]]:
    """The mean and unbiased std of each batch of padded fbanks."""
    means: list[float] = []
    stds: list[float] = []
    # Sums in float64 give the batch mean and std without holding the batch (1000 x 512 x 128 floats).
    count, total_sum, total_sq = 0, 0.0, 0.0
    # Clips are decoded one by one but turned into fbanks a chunk at a time (the project's one fbank path).
    chunk: list[torch.Tensor] = []

    def add_chunk() -> None:
        nonlocal total_sum, total_sq
        # The zero padding up to max_length adds nothing to the sums but counts in n, as in the original.
        fbank = batch_fbank(chunk, num_mel_bins=num_mel_bins, max_length=max_length, normalize=False)
        fbank = fbank.to(torch.float64)
        total_sum += float(fbank.sum())
        total_sq += float((fbank * fbank).sum())
        chunk.clear()

    def close_batch() -> None:
        n = count * max_length * num_mel_bins
        mean = total_sum / n
        means.append(mean)
        stds.append(float(np.sqrt(max(total_sq - n * mean * mean, 0.0) / (n - 1))))

    for row in hf_tqdm(split, total=total, unit=" clips", desc="Computing fbank stats"):
        chunk.append(decoded_waveform(row["audio"]))
        count += 1
        if len(chunk) == _FBANK_CHUNK or count == batch_size:
            add_chunk()
        if count == batch_size:
            close_batch()
            count, total_sum, total_sq = 0, 0.0, 0.0
    if chunk:
        add_chunk()
    if count:
        close_batch()
    return means, stds


def _is_exported_dataset(path: Path) -> bool:
    return path.is_dir() and (path / "README.md").is_file() and not (path / "datafiles").exists()


def norm_stats_of_release(
    data_dir: str | os.PathLike, config: str = "16k", batch_size: int = 1000
) -> tuple[float, float]:
    """Fbank mean and std of the training split of a release (folder or zip) or of an exported dataset folder."""
    path = Path(data_dir)
    if _is_exported_dataset(path):
        train = datasets.load_dataset(str(path), config, split="train", streaming=True)
    else:
        train = load_vocalsound(path, config=config)["train"]
    return compute_norm_stats(train, batch_size=batch_size)


def read_norm_stats(
    dataset_name_or_dir: str | os.PathLike, config: str | None = None
) -> tuple[float, float] | None:
    """The fbank ``(mean, std)`` an export wrote into the dataset card, or None if the card has none.

    Args:
        dataset_name_or_dir: an exported dataset folder, or a Hub dataset id (read through huggingface_hub).
        config: whose stats to read; default: the card's default config (or its only one).
    """
    path = Path(dataset_name_or_dir)
    if path.is_dir():
        if not (path / "README.md").is_file():
            return None
        card = DatasetCard.load(path / "README.md")
    else:
        try:
            card = DatasetCard.load(str(dataset_name_or_dir), repo_type="dataset")
        except LocalEntryNotFoundError:
            logger.warning(
                "no norm stats: the card of %s is not cached and the Hub is offline", dataset_name_or_dir
            )
            return None
        except EntryNotFoundError:
            return None
    entries = card.data.to_dict().get(NORM_STATS_KEY) or []
    if config is None:
        defaults = [c["config_name"] for c in card.data.to_dict().get("configs") or [] if c.get("default")]
        config = defaults[0] if defaults else (entries[0]["config_name"] if len(entries) == 1 else "16k")
    for entry in entries:
        if entry.get("config_name") == config:
            return float(entry["mean"]), float(entry["std"])
    return None
