"""The original AST recipe's training augmentations, batched and on the input's device.

The original (YuanGongND/ast ``src/dataloader.py``) augments one clip at a time in its dataset; here each
augmentation works on a whole batch, on whatever device the batch is on. In the original's order, the training
feature pipeline does::

    mixed = mixup(waveforms, lengths, labels, prob=0.5, num_classes=6)       # waveforms, soft targets
    fbank = batch_fbank(mixed.waveforms, lengths=lengths, normalize=False)   # [B, T, F] log-mel
    fbank = spec_augment(fbank, freqm=48, timem=192)                         # masks filled with 0
    features = normalize_fbank(fbank, mean, std)
    features = random_roll(add_uniform_noise(features))                      # only with noise=True

Every draw comes from torch's global RNG (the CPU one, or the CUDA one for data on a GPU): the HF Trainer
seeds it and saves it in its checkpoints, so ``torch.manual_seed`` makes the augmentations repeatable and a
resumed run continues the same random stream. Feature tensors are ``[batch, time, mel]``, the layout of
``batch_fbank``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torchaudio.functional import mask_along_axis_iid


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

    device = waveforms.device
    mixed = torch.rand(batch, device=device) < prob
    partner = torch.randint(0, batch, (batch,), device=device)
    # Concentrations as float32 tensors on the data's device: the draws are float32 and made there.
    concentration = torch.tensor(float(alpha), dtype=torch.float32, device=device)
    lam = torch.distributions.Beta(concentration, concentration).sample((batch,))
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


def spec_augment(features: Tensor, freqm: int, timem: int, *, mask_value: float = 0.0) -> Tensor:
    """One frequency mask and one time mask per example, as the original's SpecAugment.

    torchaudio's ``mask_along_axis_iid`` on the mel axis with ``freqm``, then on the time axis with ``timem``
    (the order of the original's ``FrequencyMasking`` then ``TimeMasking``), drawn independently per example: a
    width ``v ~ U[0, param)`` and a start ``v0 ~ U[0, size - v)``, masking ``[floor(v0), floor(v0) + floor(v))``,
    so a mask is 0 to ``param - 1`` wide. A parameter of 0 skips that mask (the validation setting). torchaudio
    draws in the features' dtype; float32 features (``batch_fbank``'s) give the draws of its transforms.

    ``mask_value`` says what the features are. The original masks the **un-normalised** log-mel
    (``batch_fbank(..., normalize=False)``) with 0, the default here. To mask **normalised** features identically,
    pass ``mask_value=-mean / (2 * std)``, which is what 0 becomes after normalisation.

    Args:
        features: ``[B, time, mel]``.
        freqm, timem: the original's mask parameters (the recipes use 48 and 192 for 1024 frames).
        mask_value: value written into the masks (see above).
    """
    _check_features(features)
    for name, param, size in (("freqm", freqm, features.shape[2]), ("timem", timem, features.shape[1])):
        if not 0 <= param <= size:
            raise ValueError(f"{name}: expected a mask parameter in [0, {size}], got {param}")
    # [B, time, mel] is already torchaudio's (..., freq, time) shape with one batch dimension, so the axes are
    # passed as they are: 2 is mel, 1 is time. A skipped mask makes no draws, keeping the RNG stream of a
    # recipe with freqm=0 or timem=0 independent of how torchaudio treats a zero parameter.
    for param, axis in ((freqm, 2), (timem, 1)):
        if param > 0:
            features = mask_along_axis_iid(features, param, mask_value, axis)
    # Masking the time axis hands back a [B, mel, time]-ordered view; the layers after it may pick other
    # kernels (and round differently) for another memory layout, so the batch leaves in the usual one.
    return features.contiguous()


def random_roll(features: Tensor, max_shift: int = 10) -> Tensor:
    """Circular shift in time of each example by an integer drawn uniformly from ``[-max_shift, max_shift)``.

    The original's ``torch.roll(fbank, np.random.randint(-10, 10), 0)`` (its ``noise`` branch), per example;
    frames rolled off one end come back at the other.
    """
    _check_features(features)
    if max_shift < 0:
        raise ValueError(f"max_shift: expected a non-negative number of frames, got {max_shift}")
    if max_shift == 0:
        return features
    batch, frames, bins = features.shape
    shift = torch.randint(-max_shift, max_shift, (batch,), device=features.device)
    # torch.roll shifts a whole tensor by one amount; a gather gives every example its own shift.
    source = (torch.arange(frames, device=features.device) - shift[:, None]) % frames
    return features.gather(1, source[:, :, None].expand(batch, frames, bins))


def add_uniform_noise(features: Tensor, max_scale: float = 0.1) -> Tensor:
    """The original's feature noise: ``x + U[0, 1) * s`` with one ``s ~ U[0, max_scale)`` per example.

    Not zero-mean: it shifts each example up by ``s / 2`` on average, as in the original
    (``fbank + torch.rand(T, F) * np.random.rand() / 10``, on normalised features).
    """
    _check_features(features)
    if max_scale < 0:
        raise ValueError(f"max_scale: expected a non-negative scale, got {max_scale}")
    scale = torch.rand(features.shape[0], 1, 1, device=features.device, dtype=features.dtype)
    noise = torch.rand(features.shape, device=features.device, dtype=features.dtype)
    return features + noise * (scale * max_scale)
