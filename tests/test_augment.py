"""The batched augmentations against the original recipe's definitions and torchaudio's masking."""

from __future__ import annotations

import pytest
import torch
import torchaudio.transforms as T
from torchaudio.functional import mask_along_axis_iid

from vocalsound_hf.augment import add_uniform_noise, mixup, random_roll, spec_augment
from vocalsound_hf.features import normalize_fbank
from vocalsound_hf.release import PAPER_NORM_MEAN, PAPER_NORM_STD


def _padded_batch(lengths, seed=0):
    torch.manual_seed(seed)
    waveforms = torch.zeros(len(lengths), max(lengths))
    for row, n in zip(waveforms, lengths):
        row[:n] = 0.3 * torch.randn(n) + 0.1
    return waveforms, torch.tensor(lengths)


def _features(batch=4, frames=100, bins=128, seed=0):
    torch.manual_seed(seed)
    return torch.randn(batch, frames, bins) * 3 - 4


def _seeded(seed, function, *args, **kwargs):
    torch.manual_seed(seed)
    return function(*args, **kwargs)


# --- mixup -------------------------------------------------------------------------------------------------


def test_mixup_follows_the_original_formula():
    waveforms, lengths = _padded_batch([1600, 800, 2000, 1200, 1000, 1600])
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    out = _seeded(3, mixup, waveforms, lengths, labels, prob=1.0, num_classes=6)
    assert out.waveforms.shape == waveforms.shape and out.waveforms.dtype == torch.float32
    assert ((out.lam > 0) & (out.lam < 1)).all()
    for i in range(6):
        j, lam, n, m = (
            out.partner[i].item(),
            out.lam[i].item(),
            lengths[i].item(),
            lengths[out.partner[i]].item(),
        )
        first = waveforms[i, :n] - waveforms[i, :n].mean()
        second = torch.zeros(n)
        second[: min(n, m)] = (waveforms[j, :m] - waveforms[j, :m].mean())[:n]
        expected = lam * first + (1 - lam) * second
        expected = expected - expected.mean()
        assert torch.allclose(out.waveforms[i, :n], expected, atol=1e-6)
        assert torch.equal(out.waveforms[i, n:], torch.zeros(waveforms.shape[1] - n))
        # Soft targets: the mixing weights on the two classes (1.0 if the partner is the row itself).
        target = torch.zeros(6)
        target[i] += lam
        target[j] += 1 - lam
        assert torch.allclose(out.targets[i], target, atol=1e-6)
    assert torch.allclose(out.targets.sum(1), torch.ones(6))


def test_mixup_weights_are_float32_beta_10_10_draws_from_the_global_rng():
    batch = 40000
    waveforms, lengths = torch.zeros(batch, 8), torch.full((batch,), 8)
    out = _seeded(1, mixup, waveforms, lengths, torch.zeros(batch, dtype=torch.long), prob=1.0, num_classes=6)
    assert out.lam.dtype == torch.float32 and out.lam.shape == (batch,)
    assert ((out.lam > 0) & (out.lam < 1)).all()
    assert abs(out.lam.mean().item() - 0.5) < 0.003
    # std of Beta(10, 10) = sqrt(ab / ((a + b)^2 (a + b + 1))) = sqrt(100 / (400 * 21)) = 0.1091
    assert abs(out.lam.std().item() - (100 / (400 * 21)) ** 0.5) < 0.003
    # The draws in order: who mixes, the partners, then the weights.
    torch.manual_seed(1)
    torch.rand(batch)
    torch.randint(0, batch, (batch,))
    expected = torch.distributions.Beta(torch.tensor(10.0), torch.tensor(10.0)).sample((batch,))
    assert torch.equal(out.lam, expected)
    smaller = _seeded(
        1, mixup, waveforms[:100], lengths[:100], torch.zeros(100).long(), prob=1.0, alpha=2.0, num_classes=6
    )
    # Beta(2, 2) is wider: std sqrt(4 / (16 * 5)) = 0.22.
    assert smaller.lam.std().item() > 0.15


def test_mixup_probability_partner_and_multi_hot_targets():
    batch = 4000
    torch.manual_seed(0)
    waveforms, lengths = torch.randn(batch, 400), torch.full((batch,), 400)
    multi_hot = (torch.rand(batch, 6) < 0.3).float()
    out = _seeded(4, mixup, waveforms, lengths, multi_hot, prob=0.5)
    mixed = out.lam < 1
    assert abs(mixed.float().mean().item() - 0.5) < 0.03
    assert torch.equal(out.waveforms[~mixed], waveforms[~mixed])
    assert torch.equal(out.partner[~mixed], torch.arange(batch)[~mixed])
    # Partners are uniform over the batch.
    assert abs(out.partner[mixed].float().mean().item() - (batch - 1) / 2) < 0.05 * batch
    lam = out.lam[:, None]
    assert torch.allclose(out.targets, lam * multi_hot + (1 - lam) * multi_hot[out.partner])
    # A class both clips share reaches 1.0, as the original's `label += lam; label += 1 - lam`.
    shared = (multi_hot * multi_hot[out.partner]).bool()
    assert torch.allclose(out.targets[shared], torch.ones(int(shared.sum())))


def test_mixup_probability_zero_is_identity_and_the_seed_makes_it_deterministic():
    waveforms, lengths = _padded_batch([1600, 800, 2000, 1200])
    labels = torch.tensor([0, 2, 5, 1])
    out = _seeded(0, mixup, waveforms, lengths, labels, prob=0.0, num_classes=6)
    assert torch.equal(out.waveforms, waveforms)
    assert torch.equal(out.targets, torch.nn.functional.one_hot(labels, 6).float())
    first = _seeded(9, mixup, waveforms, lengths, labels, prob=1.0, num_classes=6)
    second = _seeded(9, mixup, waveforms, lengths, labels, prob=1.0, num_classes=6)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    other = _seeded(10, mixup, waveforms, lengths, labels, prob=1.0, num_classes=6)
    assert not torch.equal(first.lam, other.lam)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prob": 1.5, "num_classes": 6}, "prob: expected a probability"),
        ({"prob": 0.5}, "num_classes: needed"),
        ({"prob": 0.5, "num_classes": 6, "alpha": 0.0}, "alpha"),
        ({"prob": 0.5, "num_classes": 6, "lengths": torch.tensor([5, 5])}, r"lengths: expected shape \(3,\)"),
        (
            {"prob": 0.5, "num_classes": 6, "waveforms": torch.zeros(3, 5, 2)},
            "waveforms: expected a float padded",
        ),
    ],
)
def test_mixup_bad_arguments_are_named(kwargs, match):
    args = {
        "waveforms": torch.zeros(3, 5),
        "lengths": torch.tensor([5, 5, 5]),
        "targets": torch.tensor([0, 1, 2]),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        mixup(args.pop("waveforms"), args.pop("lengths"), args.pop("targets"), **args)


# --- SpecAugment ---------------------------------------------------------------------------------------------


def _mask_extents(before, after):
    """Per example: masked mel bands and masked frames (a band or frame counts when it is masked throughout)."""
    changed = before != after
    bands = changed.all(dim=1).sum(dim=1)
    frames = changed.all(dim=2).sum(dim=1)
    return bands, frames


def _recipe_masks(features, freqm, timem):
    """The masking written out from its definition, drawing from the global RNG: per example and axis (mel
    first), a width ``v = U[0, 1) * param`` and a start ``v0 = U[0, 1) * (size - v)``, masking
    ``[floor(v0), floor(v0) + floor(v))``."""
    out = features.clone()
    for param, axis in ((freqm, 2), (timem, 1)):
        if param == 0:
            continue
        size = features.shape[axis]
        width = torch.rand(features.shape[0]) * param
        start = torch.rand(features.shape[0]) * (size - width)
        for i, (v, v0) in enumerate(zip(width.long().tolist(), start.long().tolist())):
            out[i].narrow(axis - 1, v0, v).fill_(0.0)
    return out


def test_spec_augment_widths_in_bounds_filled_and_iid():
    features = _features(batch=500, frames=200, bins=128)
    out = _seeded(5, spec_augment, features, freqm=48, timem=60)
    assert out.shape == features.shape and out.dtype == features.dtype and out.is_contiguous()
    changed = out != features
    assert (out[changed] == 0).all()
    bands, frames = _mask_extents(features, out)
    assert bands.max() <= 47 and frames.max() <= 59
    # U[0, param) widths: mean about (param - 1) / 2, and the largest ones do occur.
    assert abs(bands.float().mean().item() - 23.5) < 2 and bands.max() >= 45
    assert abs(frames.float().mean().item() - 29.5) < 2.5 and frames.max() >= 56
    # One contiguous run per axis: the masked bands (frames) are an interval.
    for i in range(500):
        masked_bands = changed[i].all(0).nonzero().flatten()
        if len(masked_bands):
            assert masked_bands[-1] - masked_bands[0] + 1 == len(masked_bands)
    # Independent per example: the masked bands differ between examples.
    assert len({tuple(changed[i].all(0).nonzero().flatten().tolist()) for i in range(500)}) > 400


@pytest.mark.parametrize(
    ("shape", "freqm", "timem"),
    [((4, 256, 128), 24, 48), ((2, 512, 128), 48, 192), ((3, 64, 128), 0, 48), ((3, 64, 128), 24, 0)],
)
@pytest.mark.parametrize("seed", [0, 11, 2024])
def test_spec_augment_is_torchaudio_mask_along_axis_iid_mel_then_time(shape, freqm, timem, seed):
    features = _features(*shape, seed=seed)
    ours = _seeded(seed, spec_augment, features, freqm=freqm, timem=timem)
    torch.manual_seed(seed)
    expected = features
    if freqm:
        expected = mask_along_axis_iid(expected, freqm, 0.0, 2)
    if timem:
        expected = mask_along_axis_iid(expected, timem, 0.0, 1)
    assert torch.equal(ours, expected)
    assert torch.equal(ours, _seeded(seed, _recipe_masks, features, freqm, timem))
    # The same number of draws: what follows in the RNG stream is unchanged.
    torch.manual_seed(seed)
    spec_augment(features, freqm=freqm, timem=timem)
    after_ours = torch.rand(4)
    torch.manual_seed(seed)
    _recipe_masks(features, freqm, timem)
    assert torch.equal(after_ours, torch.rand(4))


def test_spec_augment_equals_torchaudio_transforms_under_the_same_seed():
    features = _features(batch=8, frames=120, bins=128)
    ours = _seeded(11, spec_augment, features, freqm=24, timem=40)
    torch.manual_seed(11)
    spectrogram = features.transpose(1, 2)[:, None]  # torchaudio's [B, channel, freq, time]
    spectrogram = T.FrequencyMasking(24, iid_masks=True)(spectrogram)
    spectrogram = T.TimeMasking(40, iid_masks=True)(spectrogram)
    assert torch.equal(ours, spectrogram[:, 0].transpose(1, 2))


def test_spec_augment_is_deterministic_under_the_same_seed():
    features = _features(batch=16, frames=256, bins=128)
    first = _seeded(7, spec_augment, features, 48, 192)
    assert torch.equal(first, _seeded(7, spec_augment, features, 48, 192))
    assert not torch.equal(first, _seeded(8, spec_augment, features, 48, 192))


def test_spec_augment_on_normalised_features_with_the_normalised_fill():
    log_mel = _features()
    fill = -PAPER_NORM_MEAN / (2 * PAPER_NORM_STD)
    masked_then_normalised = normalize_fbank(_seeded(6, spec_augment, log_mel, 48, 30))
    normalised_then_masked = _seeded(6, spec_augment, normalize_fbank(log_mel), 48, 30, mask_value=fill)
    assert torch.allclose(masked_then_normalised, normalised_then_masked, atol=1e-6)


def test_spec_augment_zero_parameters_mask_nothing_and_draw_nothing():
    features = _features()
    torch.manual_seed(0)
    assert torch.equal(spec_augment(features, 0, 0), features)
    after = torch.rand(4)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(4))
    bands, frames = _mask_extents(features, _seeded(1, spec_augment, features, 0, 50))
    assert (bands == 0).all() and (frames > 0).any()
    bands, frames = _mask_extents(features, _seeded(1, spec_augment, features, 50, 0))
    assert (frames == 0).all() and (bands > 0).any()


def test_spec_augment_bad_arguments():
    features = _features()
    with pytest.raises(ValueError, match=r"freqm: expected a mask parameter in \[0, 128\]"):
        spec_augment(features, 200, 10)
    with pytest.raises(ValueError, match=r"timem: expected a mask parameter in \[0, 100\]"):
        spec_augment(features, 10, -1)
    with pytest.raises(ValueError, match="features: expected"):
        spec_augment(features[0], 10, 10)


# --- roll and noise ------------------------------------------------------------------------------------------


def test_random_roll_is_circular_with_shifts_in_range():
    features = _features(batch=400, frames=50, bins=4)
    out = _seeded(7, random_roll, features, 10)
    assert out.shape == features.shape
    shifts = []
    for before, after in zip(features, out):
        matches = [s for s in range(-10, 10) if torch.equal(after, torch.roll(before, s, 0))]
        assert len(matches) == 1
        shifts.append(matches[0])
    assert min(shifts) == -10 and max(shifts) == 9  # the original's randint(-10, 10)
    # Rolling moves values, never changes them.
    assert torch.equal(out.sort(dim=1).values, features.sort(dim=1).values)
    assert torch.equal(random_roll(features, 0), features)
    assert torch.equal(_seeded(7, random_roll, features, 10), out)
    with pytest.raises(ValueError, match="max_shift"):
        random_roll(features, -1)


def test_uniform_noise_is_the_original_non_zero_mean_noise():
    features = _features(batch=2000, frames=20, bins=16)
    noise = _seeded(8, add_uniform_noise, features) - features
    assert (noise >= 0).all() and (noise < 0.1).all()
    # Per example: U[0,1) * s with s ~ U[0, 0.1): mean s / 2 per example, mean 0.025 overall.
    assert abs(noise.mean().item() - 0.025) < 0.002
    per_example_max = noise.amax(dim=(1, 2))
    assert per_example_max.min() < 0.01 and per_example_max.max() > 0.095
    assert torch.equal(_seeded(8, add_uniform_noise, features, 0.1), features + noise)
    assert not torch.equal(_seeded(9, add_uniform_noise, features), features + noise)
    assert torch.equal(add_uniform_noise(features, 0.0), features)
    with pytest.raises(ValueError, match="max_scale"):
        add_uniform_noise(features, -0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_augmentations_stay_on_the_gpu_and_follow_the_cuda_seed():
    features = _features().cuda()
    waveforms, lengths = _padded_batch([1600, 800])
    args = (waveforms.cuda(), lengths.cuda(), torch.tensor([0, 1]).cuda())
    out = _seeded(0, mixup, *args, prob=1.0, num_classes=6)
    assert out.waveforms.device.type == out.targets.device.type == out.lam.device.type == "cuda"
    assert out.lam.dtype == torch.float32
    assert torch.equal(out.lam, _seeded(0, mixup, *args, prob=1.0, num_classes=6).lam)
    for function, extra in ((spec_augment, (48, 30)), (random_roll, ()), (add_uniform_noise, ())):
        result = _seeded(0, function, features, *extra)
        assert result.device.type == "cuda"
        assert torch.equal(result, _seeded(0, function, features, *extra))
