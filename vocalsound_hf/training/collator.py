"""Batches of clips for the Trainer: 16 kHz waveforms cut to the model's window, or fbanks cached once.

The features themselves are made on the device, by the feature pipeline, so the collator (which runs in
the dataloader's workers) only decodes and pads.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch

from ..audio import decoded_waveform
from ..features import batch_fbank, frame_span

FBANK_COLUMN = "fbank"


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
        waveforms = [decoded_waveform(example["audio"])[: self.max_samples] for example in examples]
        lengths = torch.tensor([len(w) for w in waveforms], dtype=torch.long)
        padded = torch.nn.utils.rnn.pad_sequence(waveforms, batch_first=True)
        return {"waveforms": padded, "lengths": lengths, "labels": labels}


def cache_fbank(split: datasets.Dataset, max_length: int, num_mel_bins: int = 128, batch_size: int = 64):
    """The split with its audio replaced by un-normalised fbanks (column ``fbank``), computed once with ``map``.

    The features are those the collator path computes per batch, before SpecAugment and normalisation, so
    every augmentation but waveform mixup still applies. ``datasets`` caches the result on disk.
    """

    def to_fbank(batch):
        waveforms = [decoded_waveform(audio) for audio in batch["audio"]]
        fbank = batch_fbank(waveforms, max_length=max_length, num_mel_bins=num_mel_bins, normalize=False)
        return {FBANK_COLUMN: fbank.numpy()}

    features = split.features.copy()
    del features["audio"]
    features[FBANK_COLUMN] = datasets.Array2D((max_length, num_mel_bins), "float32")
    cached = split.map(
        to_fbank,
        batched=True,
        batch_size=batch_size,
        remove_columns=["audio"],
        features=features,
        desc=f"Caching fbank features ({max_length} frames)",
    )
    return cached.with_format("numpy", columns=[FBANK_COLUMN], output_all_columns=True)
