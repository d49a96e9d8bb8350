"""Batches of clips for the Trainer: 16 kHz waveforms cut to the model's window, or fbanks cached once.

The features themselves are made on the device, by the feature pipeline, so the collator (which runs in
the dataloader's workers) only decodes and pads.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch

from ..audio import check_finite, decoded_waveform
from ..features import batch_fbank, frame_span
from ..release import TARGET_SAMPLING_RATE

FBANK_COLUMN = "fbank"


def clip_name(example: dict[str, Any], fallback: str) -> str:
    """What names a clip in an error: its ``file_name`` column, else ``fallback`` (its row or batch position)."""
    # The decoder cannot name it: neither torchcodec's decoder nor its metadata keeps the file's path.
    return str(example.get("file_name") or fallback)


def finite_waveform(example: dict[str, Any], fallback_name: str) -> torch.Tensor:
    """The clip's decoded waveform; ``AudioInputError`` naming the clip and the time of a NaN or infinite sample.

    One such sample makes the clip's features NaN, and the loss and every weight with them after one step.
    """
    waveform = decoded_waveform(example["audio"])
    # The whole clip, not only the part the window reads: a bad sample anywhere means a corrupt clip. The
    # splits are decoded at the model's rate (decode_as_model_input), which times the sample.
    check_finite(waveform, TARGET_SAMPLING_RATE, clip_name(example, fallback_name))
    return waveform


class VocalSoundCollator:
    """Batches clips for the Trainer.

    A batch holds ``labels`` and either ``waveforms`` (16 kHz mono, zero-padded to the longest clip, cut at
    the samples that ``max_length`` frames read) with their ``lengths``, or cached ``fbank`` features. Other
    columns (the speaker metadata) stay in the dataset, for the subgroup metrics.
    """

    def __init__(self, max_length: int):
        self.max_samples = frame_span(max_length)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        labels = torch.tensor([example["label"] for example in examples], dtype=torch.long)
        if FBANK_COLUMN in examples[0]:
            return {
                FBANK_COLUMN: torch.stack([torch.as_tensor(e[FBANK_COLUMN]) for e in examples]),
                "labels": labels,
            }
        waveforms = [
            finite_waveform(example, f"example {i} of the batch")[: self.max_samples]
            for i, example in enumerate(examples)
        ]
        lengths = torch.tensor([len(w) for w in waveforms], dtype=torch.long)
        padded = torch.nn.utils.rnn.pad_sequence(waveforms, batch_first=True)
        return {"waveforms": padded, "lengths": lengths, "labels": labels}


def cache_fbank(split: datasets.Dataset, max_length: int, num_mel_bins: int = 128, batch_size: int = 64):
    """The split with its audio replaced by un-normalised fbanks (column ``fbank``), computed once with ``map``.

    The features are those the collator path computes per batch, before SpecAugment and normalisation, so
    every augmentation but waveform mixup still applies. ``datasets`` caches the result on disk. A clip with a
    NaN or infinite sample raises ``AudioInputError`` naming it (``file_name``, else its row).
    """

    def to_fbank(batch, indices):
        rows = [{key: values[i] for key, values in batch.items()} for i in range(len(indices))]
        waveforms = [finite_waveform(row, f"row {index}") for row, index in zip(rows, indices)]
        fbank = batch_fbank(waveforms, max_length=max_length, num_mel_bins=num_mel_bins, normalize=False)
        return {FBANK_COLUMN: fbank.numpy()}

    features = split.features.copy()
    del features["audio"]
    features[FBANK_COLUMN] = datasets.Array2D((max_length, num_mel_bins), "float32")
    cached = split.map(
        to_fbank,
        batched=True,
        with_indices=True,
        batch_size=batch_size,
        remove_columns=["audio"],
        features=features,
        desc=f"Caching fbank features ({max_length} frames)",
    )
    return cached.with_format("numpy", columns=[FBANK_COLUMN], output_all_columns=True)
