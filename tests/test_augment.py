"""The batched augmentations against the original recipe's definitions and torchaudio's masking."""

from __future__ import annotations

import pytest
import torch
import torchaudio.transforms as T

from vocalsound_hf.augment import (
    Mixup,
    RandomRoll,
    SpecAugment,
    UniformNoise,
    add_uniform_noise,
    mixup,
    random_roll,
    sample_beta,
    spec_augment,
)
from vocalsound_hf.features import normalize_fbank
from vocalsound_hf.release import PAPER_NORM_MEAN, PAPER_NORM_STD


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _padded_batch(lengths, seed=0):
    waveforms = torch.zeros(len(lengths), max(lengths))
    for row, n in zip(waveforms, lengths):
        row[:n] = 0.3 * torch.randn(n, generator=_gen(seed + n)) + 0.1
    return waveforms, torch.tensor(lengths)


def _features(batch=4, frames=100, bins=128, seed=0):
    return torch.randn(batch, frames, bins, generator=_gen(seed)) * 3 - 4


# --- mixup -------------------------------------------------------------------------------------------------


def test_beta_draws_have_beta_10_10_statistics_and_are_reproducible():
    draws = sample_beta(10.0, 10.0, 40000, _gen(1))
    assert draws.dtype == torch.float32 and draws.shape == (40000,)
    assert abs(draws.mean().item() - 0.5) < 0.003
    # std of Beta(10, 10) = sqrt(ab / ((a + b)^2 (a + b + 1))) = sqrt(100 / (400 * 21)) = 0.1091
    assert abs(draws.std().item() - (100 / (400 * 21)) ** 0.5) < 0.003
    assert torch.equal(draws, sample_beta(10.0, 10.0, 40000, _gen(1)))
    assert not torch.equal(draws, sample_beta(10.0, 10.0, 40000, _gen(2)))


def test_mixup_follows_the_original_formula():
    waveforms, lengths = _padded_batch([1600, 800, 2000, 1200, 1000, 1600])
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    out = mixup(waveforms, lengths, labels, prob=1.0, num_classes=6, generator=_gen(3))
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


def test_mixup_probability_partner_and_multi_hot_targets():
    batch = 4000
    waveforms, lengths = torch.randn(batch, 400, generator=_gen(0)), torch.full((batch,), 400)
    multi_hot = (torch.rand(batch, 6, generator=_gen(1)) < 0.3).float()
    out = Mixup(prob=0.5)(waveforms, lengths, multi_hot, generator=_gen(4))
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


def test_mixup_probability_zero_is_identity_and_generator_makes_it_deterministic():
    waveforms, lengths = _padded_batch([1600, 800, 2000])
    labels = torch.tensor([0, 2, 5])
    out = mixup(waveforms, lengths, labels, prob=0.0, num_classes=6, generator=_gen(0))
    assert torch.equal(out.waveforms, waveforms)
    assert torch.equal(out.targets, torch.nn.functional.one_hot(labels, 6).float())
    first = mixup(waveforms, lengths, labels, prob=1.0, num_classes=6, generator=_gen(9))
    second = mixup(waveforms, lengths, labels, prob=1.0, num_classes=6, generator=_gen(9))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


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


def test_spec_augment_widths_in_bounds_filled_and_iid():
    features = _features(batch=500, frames=200, bins=128)
    out = spec_augment(features, freqm=48, timem=60, generator=_gen(5))
    assert out.shape == features.shape and out.dtype == features.dtype
    changed = out != features
    assert (out[changed] == 0).all()
    bands, frames = _mask_extents(features, out)
    assert bands.max() <= 47 and frames.max() <= 59
    # U[0, param) widths: mean about (param - 1) / 2, and the largest ones do occur.
    assert abs(bands.float().mean().item() - 23.5) < 2 and bands.max() >= 45
    assert abs(frames.float().mean().item() - 29.5) < 2.5 and frames.max() >= 56
    # Independent per example: the masked bands differ between examples.
    assert len({tuple(changed[i].all(0).nonzero().flatten().tolist()) for i in range(500)}) > 400


def test_spec_augment_equals_torchaudio_masking_under_the_same_seed():
    features = _features(batch=8, frames=120, bins=128)
    torch.manual_seed(11)
    ours = spec_augment(features, freqm=24, timem=40)
    torch.manual_seed(11)
    spectrogram = features.transpose(1, 2)[:, None]  # torchaudio's [B, channel, freq, time]
    spectrogram = T.FrequencyMasking(24, iid_masks=True)(spectrogram)
    spectrogram = T.TimeMasking(40, iid_masks=True)(spectrogram)
    assert torch.equal(ours, spectrogram[:, 0].transpose(1, 2))


def test_spec_augment_on_normalised_features_with_the_normalised_fill():
    log_mel = _features()
    fill = -PAPER_NORM_MEAN / (2 * PAPER_NORM_STD)
    masked_then_normalised = normalize_fbank(spec_augment(log_mel, 48, 30, generator=_gen(6)))
    normalised_then_masked = SpecAugment(48, 30, mask_value=fill)(normalize_fbank(log_mel), generator=_gen(6))
    assert torch.allclose(masked_then_normalised, normalised_then_masked, atol=1e-6)


def test_spec_augment_zero_parameters_and_bad_arguments():
    features = _features()
    assert torch.equal(spec_augment(features, 0, 0, generator=_gen(0)), features)
    with pytest.raises(ValueError, match=r"freqm: expected a mask parameter in \[0, 128\]"):
        spec_augment(features, 200, 10)
    with pytest.raises(ValueError, match="features: expected"):
        spec_augment(features[0], 10, 10)
    # A generator must live where the data does (a CPU generator cannot drive draws on another device).
    with pytest.raises(ValueError, match="generator: on cpu, but the data is on meta"):
        spec_augment(features.to("meta"), 10, 10, generator=_gen(0))


# --- roll and noise ------------------------------------------------------------------------------------------


def test_random_roll_is_circular_with_shifts_in_range():
    features = _features(batch=400, frames=50, bins=4)
    out = random_roll(features, 10, generator=_gen(7))
    assert out.shape == features.shape
    shifts = []
    for before, after in zip(features, out):
        matches = [s for s in range(-10, 10) if torch.equal(after, torch.roll(before, s, 0))]
        assert len(matches) == 1
        shifts.append(matches[0])
    assert min(shifts) == -10 and max(shifts) == 9  # the original's randint(-10, 10)
    assert torch.equal(RandomRoll(0)(features), features)
    assert torch.equal(random_roll(features, 10, generator=_gen(7)), out)
    with pytest.raises(ValueError, match="max_shift"):
        random_roll(features, -1)


def test_uniform_noise_is_the_original_non_zero_mean_noise():
    features = _features(batch=2000, frames=20, bins=16)
    noise = add_uniform_noise(features, generator=_gen(8)) - features
    assert (noise >= 0).all() and (noise < 0.1).all()
    # Per example: U[0,1) * s with s ~ U[0, 0.1): mean s / 2 per example, mean 0.025 overall.
    assert abs(noise.mean().item() - 0.025) < 0.002
    per_example_max = noise.amax(dim=(1, 2))
    assert per_example_max.min() < 0.01 and per_example_max.max() > 0.095
    assert torch.equal(UniformNoise(0.1)(features, generator=_gen(8)), features + noise)
    assert torch.equal(add_uniform_noise(features, 0.0, generator=_gen(8)), features)
    with pytest.raises(ValueError, match="max_scale"):
        add_uniform_noise(features, -0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_augmentations_stay_on_the_gpu():
    generator = torch.Generator(device="cuda").manual_seed(0)
    features = _features().cuda()
    waveforms, lengths = _padded_batch([1600, 800])
    out = mixup(
        waveforms.cuda(),
        lengths.cuda(),
        torch.tensor([0, 1]).cuda(),
        prob=1.0,
        num_classes=6,
        generator=generator,
    )
    assert out.waveforms.device.type == out.targets.device.type == "cuda"
    for result in (
        spec_augment(features, 48, 30, generator=generator),
        random_roll(features, generator=generator),
        add_uniform_noise(features, generator=generator),
    ):
        assert result.device.type == "cuda"
