"""One model input everywhere: the same file gives bitwise the same features on every path of the project.

The paths: ``predict`` and the Space (``load_audio`` then ``AudioClassifier``, including its sliding windows),
training from a raw release (``datasets`` decoding, the collator and the feature pipeline), training with
``--cache_features``, training from an export (the audio embedded as bytes in Parquet), and the norm stats.
A plain transformers ``pipeline`` on the saved model decodes with the ffmpeg command line and computes the
fbank with torchaudio's Kaldi code, so it is compared to float32 rounding instead of bitwise.
"""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import pipeline

from vocalsound_hf.audio import decode_as_model_input, load_audio
from vocalsound_hf.data.stats import compute_norm_stats
from vocalsound_hf.features import batch_fbank, num_frames
from vocalsound_hf.inference.classifier import AudioClassifier
from vocalsound_hf.training.collator import VocalSoundCollator, cache_fbank
from vocalsound_hf.training.pipeline import FeaturePipeline

# (name, sampling rate, channels, seconds, format): the rates and channel counts users upload, a recording
# longer than the tiny model's 1.29 s window (and than the 5.12 s of the default one), one shorter than it.
CLIPS = (
    ("mono_16k.wav", 16_000, 1, 2.0, "PCM_16"),
    ("stereo_44k.wav", 44_100, 2, 3.0, "PCM_16"),
    ("mono_8k.flac", 8_000, 1, 2.5, "PCM_16"),
    ("long_16k.wav", 16_000, 1, 12.0, "PCM_16"),
    ("short_16k.wav", 16_000, 1, 0.5, "FLOAT"),
)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The clips on disk: noise bursts over a tone, different in each channel."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    paths = []
    for name, rate, channels, seconds, subtype in CLIPS:
        t = np.arange(int(rate * seconds)) / rate
        signal = [
            0.2 * np.sin(2 * np.pi * (300 + 150 * c) * t) * (1 + np.sin(2 * np.pi * 1.3 * t))
            + 0.05 * rng.standard_normal(t.size)
            for c in range(channels)
        ]
        path = folder / name
        sf.write(path, np.stack(signal, axis=1).astype(np.float32), rate, subtype=subtype)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    return AudioClassifier.from_pretrained(tiny_model_dir, device="cpu")


def _dataset(sources: list) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"audio": sources, "label": list(range(len(sources)))},
        features=datasets.Features({"audio": datasets.Audio(), "label": datasets.Value("int64")}),
    )


def _training_features(split, classifier) -> list[torch.Tensor]:
    """Each clip through the collator and the feature pipeline (evaluation mode: no augmentation)."""
    collate = VocalSoundCollator(classifier.max_length)
    features = FeaturePipeline(classifier.mean, classifier.std, classifier.max_length)
    return [features(collate([row]), num_labels=6, training=False)[0][0] for row in split]


def test_every_project_path_gives_bitwise_the_same_model_input(clips, classifier, tmp_path):
    served = [classifier.log_mel([load_audio(path)])[0] for path in clips]
    assert all(f.shape == (classifier.max_length, 128) for f in served)

    raw = decode_as_model_input(_dataset([str(path) for path in clips]))
    cached = cache_fbank(raw, classifier.max_length)
    # An export embeds each file's bytes in Parquet; read back, datasets decodes the bytes, not a path.
    embedded = _dataset([{"bytes": path.read_bytes(), "path": path.name} for path in clips])
    embedded.to_parquet(str(tmp_path / "train.parquet"))
    exported = datasets.load_dataset("parquet", data_files=str(tmp_path / "train.parquet"), split="train")
    exported = decode_as_model_input(exported.cast_column("audio", datasets.Audio()))
    for name, split in (("data_dir", raw), ("cache_features", cached), ("dataset_name", exported)):
        for path, expected, features in zip(clips, served, _training_features(split, classifier)):
            assert torch.equal(features, expected), f"{name}: {path.name}"


def test_the_classifiers_windows_are_the_training_input(clips, classifier, monkeypatch):
    """The first window of a long recording, and a short clip padded to one window, as training sees them."""
    seen = []
    original = classifier.probabilities
    monkeypatch.setattr(
        classifier, "probabilities", lambda features: seen.append(features) or original(features)
    )
    for path in clips:
        seen.clear()
        prediction = classifier.classify(path)
        expected = classifier.log_mel([load_audio(path)])[0]
        assert torch.equal(seen[0][0], expected), path.name
        assert (
            len(prediction.windows) == len(seen[0]) == (1 if path.name == "short_16k.wav" else len(seen[0]))
        )
        assert len(seen[0]) > 1 or path.name == "short_16k.wav"  # the others are longer than one window


def test_the_norm_stats_decode_as_training_does(clips):
    stats = compute_norm_stats(decode_as_model_input(_dataset([str(path) for path in clips])))
    waveforms = [load_audio(path) for path in clips]
    frames = [num_frames(len(w)) for w in waveforms]
    fbank = batch_fbank(waveforms, max_length=max(frames), normalize=False).to(torch.float64)
    values = torch.cat([f[:n] for f, n in zip(fbank, frames)])
    assert (stats.mean, stats.std) == pytest.approx((values.mean().item(), values.std().item()), rel=1e-12)


def test_a_plain_transformers_pipeline_gets_the_same_input(clips, classifier, tiny_model_dir):
    classify = pipeline("audio-classification", model=str(tiny_model_dir), device="cpu")
    for path in clips:
        expected = classifier.log_mel([load_audio(path)])[0]
        given = classify.preprocess(str(path))["input_values"][0]
        assert given.shape == expected.shape
        # ffmpeg's command line resamples and down-mixes as torchcodec does; the fbank is torchaudio's Kaldi code.
        torch.testing.assert_close(given, expected, atol=1e-3, rtol=0, msg=path.name)
