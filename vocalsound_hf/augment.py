"""The original AST recipe's training augmentations, batched and on the input's device.

The original (YuanGongND/ast ``src/dataloader.py``) augments one clip at a time in its dataset; here each
augmentation works on a whole batch, on whatever device the batch is on. In the original's order, a training
collator does::

    mixed = mixup(waveforms, lengths, labels, prob=0.5, num_classes=6, generator=g)    # waveforms, soft targets
    fbank = batch_fbank(mixed.waveforms, lengths=lengths, normalize=False)             # [B, T, F] log-mel
    fbank = spec_augment(fbank, freqm=48, timem=192, generator=g)                      # masks filled with 0
    features = normalize_fbank(fbank, mean, std)
    features = random_roll(add_uniform_noise(features, generator=g), generator=g)     # only with noise=True

Each augmentation is a pure function taking an optional ``torch.Generator`` (on the data's device) for
reproducible randomness, plus a small ``nn.Module`` holding its configuration (``Mixup``, ``SpecAugment``,
``RandomRoll``, ``UniformNoise``). Feature tensors are ``[batch, time, mel]``, the layout of ``batch_fbank``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn


def _check_generator(generator: torch.Generator | None, device: torch.device) -> None:
    if generator is not None and generator.device.type != device.type:
        raise ValueError(
            f"generator: on {generator.device}, but the data is on {device}; "
            f"pass torch.Generator(device={str(device)!r})"
        )


def _check_features(features: Tensor) -> None:
    if features.dim() != 3:
        raise ValueError(f"features: expected [batch, time, mel], got shape {tuple(features.shape)}")


class MixupOutput(NamedTuple):
    """What :func:`mixup` returns."""

    waveforms: Tensor
    """``[B, samples]``, the same lengths as the input; rows not mixed are returned unchanged."""
    targets: Tensor
    """``[B, num_classes]`` float soft targets ``lam * t1 + (1 - lam) * t2``; one-hot for rows not mixed."""
    lam: Tensor
    """``[B]`` mixing weight of each row's own clip (1.0 for rows not mixed)."""
    partner: Tensor
    """``[B]`` index of the clip mixed in (the row itself for rows not mixed)."""


def sample_beta(
    alpha: float,
    beta: float,
    size: int,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """``size`` float32 draws from Beta(alpha, beta), reproducible through ``generator``.

    torch's Beta (and Gamma) sampling takes no generator, and seeding the global RNG around it would disturb
    other users of that RNG (other threads, the training loop). A seed drawn from ``generator`` (or from the
    global torch RNG when it is None, so ``torch.manual_seed`` still makes runs repeatable) seeds a private
    numpy ``Generator`` instead; only the ``size`` values cross to ``device``.
    """
    seed = int(
        torch.randint(0, 2**62, (1,), generator=generator, device=generator.device if generator else None)
    )
    draws = np.random.default_rng(seed).beta(alpha, beta, size)
    return torch.as_tensor(draws, dtype=torch.float32, device=device)


def _to_soft_targets(targets: Tensor, num_classes: int | None) -> Tensor:
    if targets.dim() == 1:
        if num_classes is None:
            raise ValueError("num_classes: needed when targets are class indices [B]")
        if targets.is_floating_point():
            raise TypeError(f"targets: class indices must be integers, got {targets.dtype}")
        return nn.functional.one_hot(targets.long(), num_classes).float()
    if targets.dim() == 2:
        return targets.float()
    raise ValueError(
        f"targets: expected class indices [B] or (multi-)hot targets [B, C], got {tuple(targets.shape)}"
    )


def mixup(
    waveforms: Tensor,
    lengths: Tensor,
    targets: Tensor,
    *,
    prob: float,
    num_classes: int | None = None,
    alpha: float = 10.0,
    generator: torch.Generator | None = None,
) -> MixupOutput:
    """The original AST waveform mixup, for a padded batch.

    Each row, with probability ``prob``, is mixed with a partner drawn uniformly from the batch (possibly itself,
    as the original draws from the whole dataset): both clips are de-meaned over their own length, the partner is
    zero-padded or cut to the row's length, ``mix = lam * w1 + (1 - lam) * w2`` with ``lam ~ Beta(alpha, alpha)``,
    and the mix is de-meaned again. Targets become ``lam * t1 + (1 - lam) * t2``, which for (multi-)hot targets
    is exactly the original's ``label[c1] += lam; label[c2] += 1 - lam`` (a class both clips share gets 1.0).
    Rows not mixed are left untouched (the original de-means them, which changes no Kaldi feature: every frame
    has its DC removed).

    Args:
        waveforms: ``[B, samples]`` float, zero-padded.
        lengths: ``[B]`` valid samples per row; samples past a row's length stay zero in a mixed row.
        targets: class indices ``[B]`` (with ``num_classes``) or ``[B, C]`` one-/multi-hot targets.
        prob: probability of mixing each row, in [0, 1] (the recipe uses 0.5; 0 returns the input).
        num_classes: number of classes when ``targets`` are indices.
        alpha: the Beta distribution's parameters (the original uses 10).
        generator: for reproducible draws; on the waveforms' device.
    """
    if waveforms.dim() != 2 or not waveforms.is_floating_point():
        raise ValueError(
            f"waveforms: expected a float padded batch [B, samples], got {waveforms.dtype} {tuple(waveforms.shape)}"
        )
    batch, width = waveforms.shape
    lengths = torch.as_tensor(lengths, device=waveforms.device)
    if lengths.shape != (batch,):
        raise ValueError(
            f"lengths: expected shape ({batch},), one length per row, got {tuple(lengths.shape)}"
        )
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob: expected a probability in [0, 1], got {prob}")
    if alpha <= 0:
        raise ValueError(f"alpha: expected a positive Beta parameter, got {alpha}")
    soft = _to_soft_targets(targets, num_classes).to(waveforms.device)
    if soft.shape[0] != batch:
        raise ValueError(f"targets: expected {batch} rows, got {soft.shape[0]}")
    _check_generator(generator, waveforms.device)

    device = waveforms.device
    mixed = torch.rand(batch, generator=generator, device=device) < prob
    partner = torch.randint(0, batch, (batch,), generator=generator, device=device)
    lam = sample_beta(alpha, alpha, batch, generator, device)
    partner = torch.where(mixed, partner, torch.arange(batch, device=device))
    lam = torch.where(mixed, lam, torch.ones_like(lam))

    inside = torch.arange(width, device=device) < lengths[:, None]
    length_f = lengths.clamp_min(1)[:, None].to(waveforms.dtype)
    centred = (waveforms - (waveforms * inside).sum(1, keepdim=True) / length_f) * inside
    # The partner keeps its own zero padding and is cut to this row's length by the row's mask.
    mix = lam[:, None] * centred + (1 - lam[:, None]) * centred[partner] * inside
    mix = (mix - mix.sum(1, keepdim=True) / length_f) * inside
    out = torch.where(mixed[:, None], mix, waveforms)
    soft = lam[:, None] * soft + (1 - lam[:, None]) * soft[partner]
    return MixupOutput(out, soft, lam, partner)


def spec_augment(
    features: Tensor,
    freqm: int,
    timem: int,
    *,
    mask_value: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One frequency mask and one time mask per example, as the original's SpecAugment.

    Semantics of torchaudio's ``FrequencyMasking(freqm, iid_masks=True)`` then ``TimeMasking(timem,
    iid_masks=True)``, drawn independently per example: a width ``v ~ U[0, param)`` and a start
    ``v0 ~ U[0, size - v)``, masking ``[floor(v0), floor(v0) + floor(v))``, so a mask is 0 to ``param - 1``
    wide. A parameter of 0 skips that mask (the validation setting).

    ``mask_value`` says what the features are. The original masks the **un-normalised** log-mel
    (``batch_fbank(..., normalize=False)``) with 0, the default here. To mask **normalised** features identically,
    pass ``mask_value=-mean / (2 * std)``, which is what 0 becomes after normalisation.

    Args:
        features: ``[B, time, mel]``.
        freqm, timem: the original's mask parameters (the recipes use 48 and 192 for 1024 frames).
        mask_value: value written into the masks (see above).
        generator: for reproducible draws; on the features' device. With None, the draws come from the global
            RNG in the same order as torchaudio's transforms, so the two agree under the same seed.
    """
    _check_features(features)
    for name, param, size in (("freqm", freqm, features.shape[2]), ("timem", timem, features.shape[1])):
        if not 0 <= param <= size:
            raise ValueError(f"{name}: expected a mask parameter in [0, {size}], got {param}")
    _check_generator(generator, features.device)
    batch = features.shape[0]
    for param, axis in ((freqm, 2), (timem, 1)):
        if param < 1:
            continue
        size = features.shape[axis]
        width = torch.rand(batch, generator=generator, device=features.device) * param
        start = torch.rand(batch, generator=generator, device=features.device) * (size - width)
        first = start.long()[:, None]
        position = torch.arange(size, device=features.device)
        masked = (position >= first) & (position < first + width.long()[:, None])  # [B, size]
        features = features.masked_fill(masked[:, None, :] if axis == 2 else masked[:, :, None], mask_value)
    return features


def random_roll(features: Tensor, max_shift: int = 10, *, generator: torch.Generator | None = None) -> Tensor:
    """Circular shift in time of each example by an integer drawn uniformly from ``[-max_shift, max_shift)``.

    The original's ``torch.roll(fbank, np.random.randint(-10, 10), 0)`` (its ``noise`` branch), per example;
    frames rolled off one end come back at the other.
    """
    _check_features(features)
    if max_shift < 0:
        raise ValueError(f"max_shift: expected a non-negative number of frames, got {max_shift}")
    _check_generator(generator, features.device)
    if max_shift == 0:
        return features
    batch, frames, bins = features.shape
    shift = torch.randint(-max_shift, max_shift, (batch,), generator=generator, device=features.device)
    # torch.roll shifts a whole tensor by one amount; a gather gives every example its own shift.
    source = (torch.arange(frames, device=features.device) - shift[:, None]) % frames
    return features.gather(1, source[:, :, None].expand(batch, frames, bins))


def add_uniform_noise(
    features: Tensor, max_scale: float = 0.1, *, generator: torch.Generator | None = None
) -> Tensor:
    """The original's feature noise: ``x + U[0, 1) * s`` with one ``s ~ U[0, max_scale)`` per example.

    Not zero-mean: it shifts each example up by ``s / 2`` on average, as in the original
    (``fbank + torch.rand(T, F) * np.random.rand() / 10``, on normalised features).
    """
    _check_features(features)
    if max_scale < 0:
        raise ValueError(f"max_scale: expected a non-negative scale, got {max_scale}")
    _check_generator(generator, features.device)
    scale = torch.rand(
        features.shape[0], 1, 1, generator=generator, device=features.device, dtype=features.dtype
    )
    noise = torch.rand(features.shape, generator=generator, device=features.device, dtype=features.dtype)
    return features + noise * (scale * max_scale)


class Mixup(nn.Module):
    """:func:`mixup` with its configuration; ``forward(waveforms, lengths, targets, generator=None)``."""

    def __init__(self, prob: float, num_classes: int | None = None, alpha: float = 10.0):
        super().__init__()
        self.prob, self.num_classes, self.alpha = prob, num_classes, alpha

    def forward(
        self, waveforms: Tensor, lengths: Tensor, targets: Tensor, generator: torch.Generator | None = None
    ) -> MixupOutput:
        return mixup(
            waveforms,
            lengths,
            targets,
            prob=self.prob,
            num_classes=self.num_classes,
            alpha=self.alpha,
            generator=generator,
        )

    def extra_repr(self) -> str:
        return f"prob={self.prob}, num_classes={self.num_classes}, alpha={self.alpha}"


class SpecAugment(nn.Module):
    """:func:`spec_augment` with its configuration; ``forward(features, generator=None)``.

    ``mask_value=0.0`` for un-normalised log-mel (the original); ``-mean / (2 * std)`` for normalised features.
    """

    def __init__(self, freqm: int, timem: int, mask_value: float = 0.0):
        super().__init__()
        self.freqm, self.timem, self.mask_value = freqm, timem, mask_value

    def forward(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return spec_augment(features, self.freqm, self.timem, mask_value=self.mask_value, generator=generator)

    def extra_repr(self) -> str:
        return f"freqm={self.freqm}, timem={self.timem}, mask_value={self.mask_value}"


class RandomRoll(nn.Module):
    """:func:`random_roll` with its configuration; ``forward(features, generator=None)``."""

    def __init__(self, max_shift: int = 10):
        super().__init__()
        self.max_shift = max_shift

    def forward(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return random_roll(features, self.max_shift, generator=generator)

    def extra_repr(self) -> str:
        return f"max_shift={self.max_shift}"


class UniformNoise(nn.Module):
    """:func:`add_uniform_noise` with its configuration; ``forward(features, generator=None)``."""

    def __init__(self, max_scale: float = 0.1):
        super().__init__()
        self.max_scale = max_scale

    def forward(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return add_uniform_noise(features, self.max_scale, generator=generator)

    def extra_repr(self) -> str:
        return f"max_scale={self.max_scale}"
