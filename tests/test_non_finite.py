"""NaN and infinite samples are errors naming the clip and the time of the first bad sample, at every entry
point: the classifier API, ``vocalsound-hf predict`` (strict JSON out), the builder, the collator and the Space.

Integer PCM cannot hold NaN or infinity, so the bad clips here are float WAVs (what ``soundfile`` writes
with ``subtype="FLOAT"``), as a float-exporting editor would write them.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import soundfile as sf
import test_demo
import torch

from vocalsound_hf.audio import AudioInputError
from vocalsound_hf.inference.classifier import AudioClassifier
from vocalsound_hf.release import SPLIT_FILES

REPO_ROOT = Path(__file__).resolve().parents[1]
SR = 16_000
CLI = Path(sys.executable).parent / "vocalsound-hf"
# The Space as a real server and its API client, as tests/test_demo.py starts them (pytest puts tests/ on
# sys.path).
server, client, event_model_dir = test_demo.server, test_demo.client, test_demo.event_model_dir
# Where the bad samples go, and the times the messages must state for them.
INF_AT, NAN_AT = 1234, 24_000
INF_TIME, NAN_TIME = "0.077 s", "1.500 s"


def _float_wav(path: Path, bad_at: int | None = None, value: float = math.inf, seconds: float = 2.0) -> Path:
    """Noise at 16 kHz written as 32-bit float samples, with ``value`` at sample ``bad_at``."""
    samples = np.random.default_rng(0).normal(0, 0.1, round(seconds * SR)).astype(np.float32)
    if bad_at is not None:
        samples[bad_at] = value
    sf.write(path, samples, SR, subtype="FLOAT")
    return path


def _strict_json(line: str):
    """``json.loads`` that refuses the NaN and Infinity that Python's encoder writes by default."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


@pytest.fixture(scope="module")
def classifier(tiny_model_dir) -> AudioClassifier:
    return AudioClassifier.from_pretrained(tiny_model_dir, device="cpu")


# --- the classifier API --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [(math.inf, "inf"), (-math.inf, "-inf"), (math.nan, "nan")],
    ids=["inf", "-inf", "nan"],
)
def test_a_waveform_with_a_non_finite_sample_is_an_error_naming_it(classifier, value, shown):
    waveform = torch.from_numpy(np.random.default_rng(1).normal(0, 0.1, 3 * SR).astype(np.float32))
    waveform[INF_AT] = value
    with pytest.raises(AudioInputError) as error:
        classifier.classify(waveform, name="upload.wav")
    message = str(error.value)
    assert message.startswith(f"upload.wav: sample {INF_AT} (at {INF_TIME}) is {shown};")
    # A NaN used to make the RMS NaN, and the clip was reported as silent.
    assert "silent" not in message


def test_scores_that_are_not_finite_are_an_error_not_a_prediction(classifier, tiny_model_dir):
    # Finite samples far beyond full scale overflow float32 in the fbank: NaN scores without a NaN sample.
    loud = torch.full((SR,), 1e30)
    loud[::2] = -1e30
    with pytest.raises(AudioInputError, match=r"loud.wav: the samples reach 1e\+30 \(full scale is 1\)"):
        classifier.classify(loud, name="loud.wav")
    # Normal audio through broken weights.
    broken = AudioClassifier.from_pretrained(tiny_model_dir, device="cpu")
    with torch.no_grad():
        broken.model.classifier.dense.weight.fill_(math.nan)
    clip = torch.from_numpy(np.random.default_rng(2).normal(0, 0.1, SR).astype(np.float32))
    with pytest.raises(AudioInputError, match="clip.wav: the model gave scores that are not finite numbers"):
        broken.classify(clip, name="clip.wav")


# --- vocalsound-hf predict -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_predict_json_names_bad_files_and_prints_strict_json_for_the_rest(tiny_model_dir, tmp_path):
    good = _float_wav(tmp_path / "good.wav")
    bad_inf = _float_wav(tmp_path / "bad_inf.wav", INF_AT, math.inf)
    bad_nan = _float_wav(tmp_path / "bad_nan.wav", NAN_AT, math.nan)
    loud = tmp_path / "loud.wav"
    sf.write(loud, np.full(SR, 1e30, np.float32), SR, subtype="FLOAT")
    files = [good, bad_inf, bad_nan, loud]
    result = subprocess.run(
        [CLI, "predict", tiny_model_dir, *files, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("vocalsound-hf predict: error: 3 of 4 file(s) could not be classified")
    assert f"bad_inf.wav: sample {INF_AT} (at {INF_TIME}) is inf" in errors[0]
    assert f"bad_nan.wav: sample {NAN_AT} (at {NAN_TIME}) is nan" in errors[0]
    assert "loud.wav: the samples reach 1e+30" in errors[0]
    # The good file is still classified, as strict JSON, and nothing is printed as NaN.
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and "NaN" not in result.stdout and "Infinity" not in result.stdout
    record = _strict_json(lines[0])
    assert record["file"] == str(good)
    scores = [p["score"] for p in record["predictions"]] + [w["score"] for w in record["windows"]]
    assert all(math.isfinite(score) for score in scores)


# --- the builder ---------------------------------------------------------------------------------------------


def test_builder_fails_on_float_clips_with_non_finite_samples_or_skips_them(synth_release, tmp_path, caplog):
    from vocalsound_hf import load_vocalsound

    release = Path(shutil.copytree(synth_release, tmp_path / "vs_release_16k"))
    entries = json.loads((release / "datafiles" / f"{SPLIT_FILES['train']}.json").read_text())["data"]
    train = [PurePosixPath(entry["wav"]).name for entry in entries]
    bad_inf, bad_nan, float_ok = train[1], train[4], train[7]
    audio = release / "audio_16k"
    for name, bad_at, value in ((bad_inf, INF_AT, math.inf), (bad_nan, 800, math.nan), (float_ok, None, 0.0)):
        samples, rate = sf.read(audio / name, dtype="float32")
        assert rate == SR and len(samples) > INF_AT
        if bad_at is not None:
            samples[bad_at] = value
        sf.write(audio / name, samples, SR, subtype="FLOAT")

    with pytest.raises(ValueError) as error:
        load_vocalsound(release)
    message = str(error.value)
    assert "2 clips" in message and "skip_bad_audio=True" in message
    assert f"train: {bad_inf}: non-finite (sample {INF_AT} at {INF_TIME} is inf)" in message
    assert f"train: {bad_nan}: non-finite (sample 800 at 0.050 s is nan)" in message
    assert float_ok not in message  # a float clip with finite samples is fine

    with caplog.at_level(logging.WARNING, logger="vocalsound_hf.data"):
        dataset = load_vocalsound(release, skip_bad_audio=True)
    assert dataset["train"]["file_name"] == [name for name in train if name not in (bad_inf, bad_nan)]
    report = " ".join(r.getMessage() for r in caplog.records if "skipped" in r.getMessage())
    assert "(train 2; non-finite 2)" in report and bad_inf in report and bad_nan in report


# --- the collator --------------------------------------------------------------------------------------------


def _clips(tmp_path: Path, with_file_name: bool):
    """A datasets split of one good, one inf and one NaN clip; the NaN lies past the 128-frame window."""
    import datasets

    paths = [
        _float_wav(tmp_path / "good.wav"),
        _float_wav(tmp_path / "bad_inf.wav", INF_AT, math.inf),
        _float_wav(tmp_path / "bad_nan.wav", NAN_AT, math.nan),
    ]
    # Paths, not arrays: datasets encodes arrays as 16-bit PCM, which would turn the inf into full scale.
    columns = {"audio": [str(p) for p in paths], "label": [0, 1, 2]}
    features = {"audio": datasets.Audio(sampling_rate=SR), "label": datasets.ClassLabel(num_classes=6)}
    if with_file_name:
        columns["file_name"] = [p.name for p in paths]
        features["file_name"] = datasets.Value("string")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def test_collator_names_the_clip_and_time_of_a_non_finite_sample(tmp_path):
    from vocalsound_hf.training.collator import VocalSoundCollator

    collate = VocalSoundCollator(max_length=128)
    named = _clips(tmp_path, with_file_name=True)
    assert collate([named[0]])["waveforms"].isfinite().all()
    with pytest.raises(AudioInputError, match=rf"^bad_inf.wav: sample {INF_AT} \(at {INF_TIME}\) is inf;"):
        collate([named[0], named[1]])
    with pytest.raises(AudioInputError, match=rf"^bad_nan.wav: sample {NAN_AT} \(at {NAN_TIME}\) is nan;"):
        collate([named[2], named[0]])
    unnamed = _clips(tmp_path, with_file_name=False)
    with pytest.raises(AudioInputError, match=rf"^example 1 of the batch: sample {NAN_AT} \(at {NAN_TIME}\)"):
        collate([unnamed[0], unnamed[2]])


def test_cached_fbank_names_the_clip_and_time_of_a_non_finite_sample(tmp_path):
    from vocalsound_hf.training.collator import FBANK_COLUMN, cache_fbank

    named = _clips(tmp_path, with_file_name=True)
    assert np.isfinite(cache_fbank(named.select([0]), max_length=128)[0][FBANK_COLUMN]).all()
    with pytest.raises(AudioInputError, match=rf"^bad_inf.wav: sample {INF_AT} \(at {INF_TIME}\) is inf;"):
        cache_fbank(named, max_length=128)
    unnamed = _clips(tmp_path, with_file_name=False).select([0, 2])
    with pytest.raises(AudioInputError, match=rf"^row 1: sample {NAN_AT} \(at {NAN_TIME}\) is nan;"):
        cache_fbank(unnamed, max_length=128)


# --- the Space -----------------------------------------------------------------------------------------------


def _space_handler(classifier: AudioClassifier, monkeypatch):
    """The function behind the Space's ``/classify`` endpoint, as ``build_demo`` wires it."""
    # app.py imports its sibling modules as a Space runs it: from its own folder.
    monkeypatch.syspath_prepend(str(REPO_ROOT / "spaces_demo"))
    spec = importlib.util.spec_from_file_location(
        "vocalsound_space_app", REPO_ROOT / "spaces_demo" / "app.py"
    )
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    demo = app.build_demo(classifier)
    return next(block_fn.fn for block_fn in demo.fns.values() if block_fn.api_name == "classify")


def test_space_shows_the_error_for_a_non_finite_upload_and_classifies_the_next(
    classifier, tmp_path, monkeypatch
):
    import gradio as gr

    classify = _space_handler(classifier, monkeypatch)
    cases = {
        _float_wav(tmp_path / "bad_inf.wav", INF_AT, math.inf): f"sample {INF_AT} (at {INF_TIME}) is inf",
        _float_wav(tmp_path / "bad_nan.wav", NAN_AT, math.nan): f"sample {NAN_AT} (at {NAN_TIME}) is nan",
    }
    good = _float_wav(tmp_path / "good.wav", seconds=1.0)  # one window, one table row
    for path, reason in cases.items():
        # A gr.Error is shown to the user as a message; the server carries on.
        with pytest.raises(gr.Error) as error:
            classify(str(path))
        assert error.value.message.startswith(f"Cannot classify this audio: {reason};")
        probabilities, _spectrogram, _info, _timeline, table, *_events = classify(str(good))
        assert all(math.isfinite(p) for p in probabilities.values())
        assert sum(probabilities.values()) == pytest.approx(1, abs=1e-4)
        assert [row[2] for row in table] == [max(probabilities, key=probabilities.get)]


@pytest.mark.slow
def test_space_server_answers_a_non_finite_upload_with_the_message_and_keeps_serving(
    client, server, tmp_path
):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = _float_wav(tmp_path / "bad_nan.wav", NAN_AT, math.nan)
    with pytest.raises(
        AppError, match=rf"Cannot classify this audio: sample {NAN_AT} \(at {NAN_TIME}\) is nan"
    ):
        client.predict(handle_file(str(bad)), api_name="/classify")
    label, *_rest = client.predict(handle_file(str(_float_wav(tmp_path / "good.wav"))), api_name="/classify")
    assert sum(row["confidence"] for row in label["confidences"]) == pytest.approx(1, abs=1e-4)
    log = server[1].read_text()
    assert "rejected bad_nan.wav: sample" in log and "Traceback" not in log
