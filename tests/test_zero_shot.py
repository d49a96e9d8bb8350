"""The zero-shot default: an AudioSet AST restricted to the six VocalSound classes by their AudioSet ids.

``MIT/ast-finetuned-audioset-10-10-0.4593`` cannot be downloaded here; the synthetic AudioSet checkpoint of
``../shared/reference/ast`` converted to a local directory stands in for it (the same 527-class head, named
by the AudioSet label CSV).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import converted_audioset_dir
from transformers import ASTForAudioClassification

from vocalsound_hf import cli
from vocalsound_hf.inference.classifier import AudioClassifier
from vocalsound_hf.inference.predict import default_model, split_model_argument
from vocalsound_hf.models.presets import AUDIOSET_AST, MODEL_VARIABLE
from vocalsound_hf.release import AUDIOSET_INDICES, CLASS_NAMES

SR = 16_000


@pytest.fixture(scope="module")
def audioset_dir(tmp_path_factory):
    return converted_audioset_dir(tmp_path_factory, 10)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("zero_shot") / "clip.wav"
    generator = np.random.default_rng(0)
    t = np.arange(SR * 3) / SR
    wave = 0.2 * np.sin(2 * np.pi * 700 * t) * (
        generator.random(t.size) > 0.3
    ) + 0.01 * generator.standard_normal(t.size)
    sf.write(path, wave.astype(np.float32), SR)
    return path


def test_an_audioset_model_classifies_the_six_classes_with_its_own_rows(audioset_dir, clip):
    classifier = AudioClassifier.from_pretrained(audioset_dir)
    assert classifier.zero_shot and classifier.labels == list(CLASS_NAMES)
    full = ASTForAudioClassification.from_pretrained(audioset_dir).eval()
    features = classifier.log_mel([torch.from_numpy(sf.read(clip, dtype="float32")[0])])
    with torch.inference_mode():
        expected = full(input_values=features).logits[0, list(AUDIOSET_INDICES)].sigmoid()
    scores = classifier.probabilities(features)[0]
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)
    # Sigmoid scores, as AudioSet was trained (multi-label): they need not sum to one.
    assert abs(float(scores.sum()) - 1) > 1e-3
    prediction = classifier.classify(clip)
    assert set(prediction.probabilities) == set(CLASS_NAMES)


def test_a_vocalsound_model_is_not_zero_shot(tiny_model_dir):
    assert not AudioClassifier.from_pretrained(tiny_model_dir).zero_shot


def test_predict_without_a_model_uses_the_configured_one_else_the_audioset_ast(
    audioset_dir, clip, monkeypatch, capsys
):
    monkeypatch.delenv(MODEL_VARIABLE, raising=False)
    assert default_model() == AUDIOSET_AST
    assert split_model_argument([str(clip)]) == (AUDIOSET_AST, [str(clip)])
    assert split_model_argument([str(audioset_dir), str(clip)]) == (str(audioset_dir), [str(clip)])
    with pytest.raises(ValueError, match="is a model, not audio"):
        split_model_argument([str(audioset_dir)])
    # Offline, the default is named in one line instead of a traceback.
    assert cli.main(["predict", str(clip)]) == 2
    assert f"cannot load the model '{AUDIOSET_AST}'" in capsys.readouterr().err
    monkeypatch.setenv(MODEL_VARIABLE, str(audioset_dir))
    assert cli.main(["predict", "--json", str(clip)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {p["label"] for p in result["predictions"]} <= set(CLASS_NAMES) and len(result["predictions"]) == 3
