"""batch_fbank against transformers' ASTFeatureExtractor, torchaudio's kaldi.fbank and the original AST (case A)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.compliance.kaldi as kaldi

import vocalsound_hf.features as features_module
from vocalsound_hf.features import batch_fbank, make_feature_extractor, normalize_fbank, num_frames
from vocalsound_hf.release import PAPER_NORM_MEAN, PAPER_NORM_STD

LOG_EPS = math.log(torch.finfo(torch.float32).eps)
PAD_VALUE = -PAPER_NORM_MEAN / (2 * PAPER_NORM_STD)


def _clip(num_samples: int, seed: int) -> torch.Tensor:
    """Noise with a tone, a brown-noise bed and a DC offset, in [-1, 1]: every band well above the log floor."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples) / 16000
    brown = torch.cumsum(torch.randn(num_samples, generator=generator), 0) * 0.002
    white = 0.05 * torch.randn(num_samples, generator=generator)
    return (0.3 * torch.sin(2 * math.pi * 440 * t) + white + brown - brown.mean() + 0.05).clamp(-1, 1)


def _extractor_features(clips, max_length=512):
    extractor = make_feature_extractor(max_length=max_length)
    values = extractor([c.numpy() for c in clips], sampling_rate=16000, return_tensors="np")["input_values"]
    return torch.from_numpy(np.asarray(values))


@pytest.mark.parametrize("num_samples", [400, 401, 560, 16000, 192000])
def test_matches_ast_feature_extractor_per_length(num_samples):
    clip = _clip(num_samples, seed=num_samples)
    ours = batch_fbank([clip])
    reference = _extractor_features([clip])
    assert ours.shape == reference.shape == (1, 512, 128)
    assert ours.dtype == torch.float32
    assert (ours - reference).abs().max().item() <= 1e-4


def test_matches_ast_feature_extractor_on_a_mixed_batch():
    generator = torch.Generator().manual_seed(7)
    lengths = torch.randint(400, 48000, (6,), generator=generator).tolist() + [400, 81920]
    clips = [_clip(n, seed=i) for i, n in enumerate(lengths)]
    ours = batch_fbank(clips)
    reference = _extractor_features(clips)
    assert (ours - reference).abs().max().item() <= 1e-4
    # max_length is honoured as a call argument (ASTFeatureExtractor only reads it from the instance).
    short = batch_fbank(clips, max_length=100)
    assert (short - _extractor_features(clips, max_length=100)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("num_samples", [400, 401, 560, 16000, 192000])
def test_raw_log_mel_matches_kaldi_fbank(num_samples):
    clip = _clip(num_samples, seed=1)
    reference = kaldi.fbank(clip[None], window_type="hanning", num_mel_bins=128)
    frames = reference.shape[0]
    assert frames == num_frames(num_samples)
    ours = batch_fbank([clip], max_length=frames + 3, normalize=False)[0]
    assert (ours[:frames] - reference).abs().max().item() <= 1e-4
    assert torch.equal(ours[frames:], torch.zeros(3, 128))
    # Band 3 holds no FFT bin: exactly the log floor, as in Kaldi.
    assert torch.equal(ours[:frames, 3], torch.full((frames,), LOG_EPS, dtype=torch.float32))


@pytest.mark.parametrize("num_mel_bins", [23, 40, 80, 200])
def test_other_mel_bin_counts_match_kaldi_fbank(num_mel_bins):
    # The mel product runs per group of 16 filters: 23, 40 and 80 leave a partial last group, and at 200
    # bands several filters hold no FFT bin at all (Kaldi's log floor).
    clips = [_clip(n, seed=n) for n in (16000, 4800, 401)]
    ours = batch_fbank(clips, num_mel_bins=num_mel_bins, max_length=100, normalize=False)
    assert ours.shape == (3, 100, num_mel_bins)
    for clip, features in zip(clips, ours):
        reference = kaldi.fbank(clip[None], window_type="hanning", num_mel_bins=num_mel_bins)
        frames = reference.shape[0]
        assert (features[:frames] - reference).abs().max().item() <= 1e-4
        assert torch.equal(features[frames:], torch.zeros(100 - frames, num_mel_bins))
    if num_mel_bins == 200:
        assert (reference == LOG_EPS).all(dim=0).sum().item() > 0


def test_one_frame_then_padding():
    clip = _clip(400, seed=3)
    features = batch_fbank([clip])[0]
    assert not torch.allclose(features[0], torch.full((128,), PAD_VALUE))
    assert torch.allclose(features[1:], torch.full((511, 128), PAD_VALUE))


def test_long_clip_is_cut_to_the_first_frames():
    clip = _clip(192000, seed=4)
    reference = kaldi.fbank(clip[None], window_type="hanning", num_mel_bins=128)
    assert reference.shape[0] == 1198
    ours = batch_fbank([clip], normalize=False)[0]
    assert (ours - reference[:512]).abs().max().item() <= 1e-4


@pytest.mark.parametrize("num_samples", [0, 1, 399])
def test_shorter_than_one_frame_is_rejected_like_the_reference(num_samples):
    clip = torch.zeros(num_samples)
    # The reference refuses it: kaldi.fbank asserts window_size <= len(waveform).
    with pytest.raises(AssertionError, match="window size"):
        _extractor_features([clip])
    with pytest.raises(ValueError, match=r"waveforms\[1\]: .* shorter than one Kaldi frame \(400 samples"):
        batch_fbank([_clip(16000, seed=0), clip])


def test_matches_original_ast_case_a(reference_ast):
    case = torch.load(reference_ast / "features.pt")
    assert case["target_length"] == 512 and case["num_mel_bins"] == 128
    clips = [torch.from_numpy(sf.read(reference_ast / name, dtype="float32")[0]) for name in case["files"]]
    ours = batch_fbank(clips, mean=case["norm_mean"], std=case["norm_std"])
    raw = batch_fbank(clips, max_length=1000, normalize=False)
    for i, name in enumerate(case["files"]):
        expected = case["features"][name]
        assert (ours[i] - expected).abs().max().item() <= 2e-4, name
        assert torch.equal(ours[i, :, 3], expected[:, 3]), name
        frames = case["n_frames"][name]
        assert (raw[i, :frames] - case["fbank_raw"][name]).abs().max().item() <= 2e-3, name
        assert torch.equal(raw[i, :frames, 3], torch.full((frames,), LOG_EPS)), name
    # wav3 is padded by 2 frames, wav4 cut from 898 frames.
    assert torch.allclose(ours[2, 510:], torch.full((2, 128), -case["norm_mean"] / (2 * case["norm_std"])))


def test_padded_batch_equals_list_whatever_the_padding_holds():
    lengths = [16000, 400, 560, 48000]
    clips = [_clip(n, seed=n) for n in lengths]
    padded = torch.randn(len(clips), 50000, generator=torch.Generator().manual_seed(0))
    for row, clip in zip(padded, clips):
        row[: len(clip)] = clip
    from_list = batch_fbank(clips)
    assert torch.equal(batch_fbank(padded, lengths=lengths), from_list)
    assert torch.equal(batch_fbank(padded, lengths=torch.tensor(lengths)), from_list)


@pytest.mark.parametrize("max_length", [512, 2000])
@pytest.mark.parametrize("normalize", [True, False])
def test_whole_chunk_writes_give_the_per_clip_writes_bit_for_bit(monkeypatch, normalize, max_length):
    """A GPU writes each chunk whole (padding masked, rows indexed); run that way on the CPU it gives the same bits.

    The lengths give chunks of one frame and of many, clips cut at ``max_length`` and, with 2000 frames, chunks
    shorter than the output.
    """
    lengths = [16000, 400, 192000, 560, 90000, 401, 48000]
    clips = [_clip(n, seed=n) for n in lengths]
    padded = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    per_clip = batch_fbank(clips, max_length=max_length, normalize=normalize)
    monkeypatch.setattr(features_module, "_PER_CLIP_WRITES", set())
    whole_chunk = batch_fbank(clips, max_length=max_length, normalize=normalize)
    assert torch.equal(whole_chunk, per_clip)
    assert torch.equal(
        batch_fbank(padded, lengths=lengths, max_length=max_length, normalize=normalize), per_clip
    )
    pad = PAD_VALUE if normalize else 0.0
    assert (whole_chunk[1, 1:] == pad).all() and (whole_chunk[1, 0] != pad).any()  # the one-frame clip


def test_normalize_false_then_normalize_fbank_equals_normalized():
    clips = [_clip(n, seed=n) for n in (3000, 20000)]
    raw = batch_fbank(clips, normalize=False)
    assert torch.equal(raw[0, num_frames(3000) :], torch.zeros(512 - num_frames(3000), 128))
    assert torch.allclose(normalize_fbank(raw), batch_fbank(clips), atol=1e-6)


def test_float64_and_numpy_input_give_float32_on_the_same_values():
    clip = _clip(5000, seed=5)
    expected = batch_fbank([clip])
    assert torch.equal(batch_fbank([clip.double()]), expected)
    assert torch.equal(batch_fbank([clip.numpy()]), expected)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda c: batch_fbank([c], sampling_rate=44100), ValueError, "sampling_rate: expected 16000"),
        (lambda c: batch_fbank(c), ValueError, "wrap a single clip in a list"),
        (lambda c: batch_fbank(torch.stack([c, c])), ValueError, "lengths: a 2-D padded batch needs"),
        (lambda c: batch_fbank(torch.stack([c, c]), lengths=[800]), ValueError, "expected 2 lengths"),
        (lambda c: batch_fbank(torch.stack([c, c]), lengths=[800, 900]), ValueError, r"in \[0, 800\]"),
        (lambda c: batch_fbank([c], lengths=[800]), ValueError, "only for a 2-D padded batch"),
        (lambda c: batch_fbank([c[None]]), ValueError, r"waveforms\[0\]: expected a 1-D"),
        (lambda c: batch_fbank([(c * 32767).to(torch.int16)]), TypeError, "floating-point"),
        (lambda c: batch_fbank([]), ValueError, "at least one clip"),
        (lambda c: batch_fbank([c], max_length=0), ValueError, "max_length"),
        (lambda c: batch_fbank([c], num_mel_bins=3), ValueError, "num_mel_bins"),
    ],
)
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call(_clip(800, seed=0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_gpu_and_matches_the_cpu():
    clips = [_clip(n, seed=n) for n in (400, 16000, 192000)]
    on_gpu = batch_fbank([c.cuda() for c in clips])
    assert on_gpu.device.type == "cuda"
    assert (on_gpu.cpu() - batch_fbank(clips)).abs().max().item() <= 1e-3
