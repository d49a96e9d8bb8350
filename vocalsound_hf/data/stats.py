"""The fbank normalisation statistics of a training split, and the record of what they describe.

One definition: the mean and (unbiased) standard deviation of every log-mel value of every frame of every
clip of the split, at 16 kHz with 128 mel bins, without padding and without cutting. Padding frames are left
out because they are not the audio: counted in, as the original AST's ``get_norm_stats.py`` does (clips
zero-padded or cut to the model's ``input_tdim``), they made the statistics depend on the model's length,
so that a 256-frame recipe trained on different inputs from a raw release than from its export (whose card
held them at 512 frames). Left out, the statistics are a property of the data alone, the same for every
model length and every path that reads the data.

An export writes them into the dataset card's YAML (``norm_stats``, one entry per config) together with
that definition (``NormStats.card_entry``), where training reads them back instead of decoding the split
again, and recomputes them when the card's describe something else (an older export).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from datasets.utils import tqdm as hf_tqdm
from huggingface_hub import DatasetCard
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

from ..audio import check_finite, decode_as_model_input, decoded_waveform
from ..features import batch_fbank, num_frames
from ..release import TARGET_SAMPLING_RATE
from .builder import load_vocalsound

logger = logging.getLogger(__name__)

NORM_STATS_KEY = "norm_stats"
NUM_MEL_BINS = 128
# What the statistics are taken over, recorded with them: a card whose entry says otherwise is not used.
FRAMES_RULE = "every frame of every clip, no padding, no cut"
# Clips per batch_fbank call: big enough to batch, small enough to stay in cache.
_FBANK_CHUNK = 32


@dataclass(frozen=True)
class NormStats:
    """Fbank mean and std with what they were computed on."""

    mean: float
    std: float
    split: str = "train"
    sampling_rate: int = TARGET_SAMPLING_RATE
    num_mel_bins: int = NUM_MEL_BINS
    frames: str = FRAMES_RULE

    def describes(self, sampling_rate: int = TARGET_SAMPLING_RATE, num_mel_bins: int = NUM_MEL_BINS) -> bool:
        """Whether these are the statistics of this definition, for inputs of that rate and mel bins."""
        return (self.sampling_rate, self.num_mel_bins, self.frames) == (
            sampling_rate,
            num_mel_bins,
            FRAMES_RULE,
        )

    def card_entry(self, config: str) -> dict[str, Any]:
        """The card's YAML entry; the floats in full, so that reading them back gives the same features."""
        return {"config_name": config, **asdict(self)}

    @classmethod
    def from_card_entry(cls, entry: dict[str, Any]) -> NormStats:
        """An entry of a card's ``norm_stats``; one of an export before ``frames`` was recorded says so."""
        frames = entry.get("frames") or f"padded or cut to {entry.get('max_length', 'unknown')} frames"
        return cls(
            mean=float(entry["mean"]),
            std=float(entry["std"]),
            split=entry.get("split", "train"),
            sampling_rate=int(entry.get("sampling_rate", TARGET_SAMPLING_RATE)),
            num_mel_bins=int(entry.get("num_mel_bins", NUM_MEL_BINS)),
            frames=frames,
        )

    def __str__(self) -> str:
        return (
            f"mean {self.mean:.7f}, std {self.std:.7f} ({self.split} split, {self.sampling_rate} Hz, "
            f"{self.num_mel_bins} mel bins, {self.frames})"
        )


def compute_norm_stats(
    split: datasets.Dataset | datasets.IterableDataset, num_mel_bins: int = NUM_MEL_BINS
) -> NormStats:
    """The fbank statistics of a split (see the module docstring for the definition).

    Clips are decoded as every path decodes them (16 kHz, channels averaged) and turned into 128-bin Kaldi
    fbanks (:func:`vocalsound_hf.features.batch_fbank`); sums are taken in float64. A NaN or infinite sample
    is an error naming the clip.
    """
    has_names = "file_name" in (split.column_names or [])
    split = decode_as_model_input(split.select_columns(["audio", *(["file_name"] if has_names else [])]))
    try:
        total = len(split)
    except TypeError:  # an IterableDataset knows its size only from its info, if at all
        total = next(
            (s.num_examples for name, s in (split.info.splits or {}).items() if name == split.split), None
        )
    count, total_sum, total_sq = 0, 0.0, 0.0
    chunk: list[torch.Tensor] = []

    def add_chunk() -> None:
        nonlocal count, total_sum, total_sq
        frames = [num_frames(len(w)) for w in chunk]
        fbank = batch_fbank(chunk, num_mel_bins=num_mel_bins, max_length=max(frames), normalize=False)
        real = torch.arange(fbank.shape[1])[None, :] < torch.tensor(frames)[:, None]
        values = fbank[real].to(torch.float64)
        count += values.numel()
        total_sum += float(values.sum())
        total_sq += float(values.square().sum())
        chunk.clear()

    for index, row in enumerate(hf_tqdm(split, total=total, unit=" clips", desc="Computing fbank stats")):
        waveform = decoded_waveform(row["audio"])
        check_finite(waveform, TARGET_SAMPLING_RATE, row["file_name"] if has_names else f"clip {index}")
        chunk.append(waveform)
        if len(chunk) == _FBANK_CHUNK:
            add_chunk()
    if chunk:
        add_chunk()
    if count < 2:
        raise ValueError("cannot compute norm stats of an empty split")
    mean = total_sum / count
    std = max(total_sq - count * mean * mean, 0.0) ** 0.5 / (count - 1) ** 0.5
    stats = NormStats(mean, std, num_mel_bins=num_mel_bins)
    logger.info("fbank stats: %s", stats)
    return stats


def _is_exported_dataset(path: Path) -> bool:
    return path.is_dir() and (path / "README.md").is_file() and not (path / "datafiles").exists()


def norm_stats_of_release(data_dir: str | os.PathLike, config: str = "16k") -> NormStats:
    """Fbank mean and std of the training split of a release (folder or zip) or of an exported dataset folder."""
    path = Path(data_dir)
    if _is_exported_dataset(path):
        train = datasets.load_dataset(str(path), config, split="train", streaming=True)
    else:
        train = load_vocalsound(path, config=config)["train"]
    return compute_norm_stats(train)


def read_norm_stats(dataset_name_or_dir: str | os.PathLike, config: str | None = None) -> NormStats | None:
    """The fbank statistics an export wrote into the dataset card, or None if the card has none.

    What they describe comes with them (``NormStats.describes``): an older export's say so too.

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
            return NormStats.from_card_entry(entry)
    return None
