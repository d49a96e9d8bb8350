"""AST input features of a training or evaluation batch, on its device, with the recipe's augmentations."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .. import augment
from ..features import batch_fbank, normalize_fbank
from .collator import FBANK_COLUMN


class FeaturePipeline:
    """AST input features of a batch, on its device, with the original recipe's augmentations when training.

    Order as in the original dataloader: waveform mixup (Beta(10, 10), soft targets), fbank, SpecAugment on
    the un-normalised log-mel, normalisation ``(x - mean) / (2 * std)``, noise, roll. Randomness comes from
    torch's global generator, which the Trainer seeds, checkpoints and restores, so a resumed run draws
    the same augmentations as an uninterrupted one.
    """

    def __init__(
        self,
        mean: float,
        std: float,
        max_length: int,
        num_mel_bins: int = 128,
        freqm: int = 0,
        timem: int = 0,
        mixup: float = 0.0,
        roll: bool = False,
        noise: bool = False,
    ):
        self.mean, self.std = float(mean), float(std)
        self.max_length, self.num_mel_bins = max_length, num_mel_bins
        self.freqm, self.timem, self.mixup, self.roll, self.noise = freqm, timem, mixup, roll, noise

    def __call__(self, batch: Mapping[str, torch.Tensor], num_labels: int, training: bool):
        """``(input_values, targets)``: features ``[B, max_length, num_mel_bins]`` and class ids or soft targets."""
        targets = batch["labels"]
        if FBANK_COLUMN in batch:
            fbank = batch[FBANK_COLUMN].float()
        else:
            waveforms, lengths = batch["waveforms"].float(), batch["lengths"]
            if training and self.mixup > 0:
                mixed = augment.mixup(waveforms, lengths, targets, prob=self.mixup, num_classes=num_labels)
                waveforms, targets = mixed.waveforms, mixed.targets
            fbank = batch_fbank(
                waveforms,
                max_length=self.max_length,
                num_mel_bins=self.num_mel_bins,
                lengths=lengths,
                normalize=False,
            )
        if training and (self.freqm or self.timem):
            fbank = augment.spec_augment(fbank, freqm=self.freqm, timem=self.timem)
        fbank = normalize_fbank(fbank, self.mean, self.std)
        if training and self.noise:
            fbank = augment.add_uniform_noise(fbank)
        if training and self.roll:
            fbank = augment.random_roll(fbank)
        return fbank, targets
