"""Sound events: the merging and threshold rule on hand-made window scores, the streaming detector on audio with
known events, the three output formats and ``vocalsound-hf detect``.

``tone_classifier`` stands in for a trained model: class ``c`` is a pure tone at ``TONES_HZ[c]``, and its logit
is how far that tone's mel band peaks above the window's median, so where each event is and what it is are
known exactly (a randomly initialised AST would give every window nearly the same scores).
"""

from __future__ import annotations

import json
import math
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import ASTConfig

from vocalsound_hf import cli
from vocalsound_hf.audio import AudioInputError, load_audio, stream_audio
from vocalsound_hf.data.soundscapes import Soundscape, SoundscapeParams, mix_soundscape
from vocalsound_hf.event_metrics import score_events
from vocalsound_hf.events import Event, events_from_audacity, events_from_csv
from vocalsound_hf.features import make_feature_extractor
from vocalsound_hf.inference.classifier import AudioClassifier
from vocalsound_hf.inference.detection import (
    DETECTION_FILE,
    DetectionThresholds,
    EventTracker,
    StreamingDetector,
)
from vocalsound_hf.inference.tuning import tune_detection, tune_thresholds, window_scores
from vocalsound_hf.release import CLASS_NAMES

SR = 16_000
TONES_HZ = (300.0, 600.0, 1200.0, 2000.0, 3200.0, 5000.0)
NOISE_DBFS = -50.0
# Three events: (class, onset s, duration s).
PLACED = ((2, 3.0, 0.6), (0, 7.5, 1.2), (5, 12.0, 0.4))


class ToneBands(torch.nn.Module):
    """Class ``c``'s logit: how far the mel bin of ``TONES_HZ[c]`` peaks above the window's median value."""

    def __init__(self, config, bins: list[int]):
        super().__init__()
        self.config = config
        self.register_buffer("bins", torch.tensor(bins))
        self.margin = torch.nn.Parameter(torch.tensor(1.0))  # a parameter gives the model a device

    def forward(self, input_values: torch.Tensor) -> SimpleNamespace:
        peaks = input_values[:, :, self.bins].amax(dim=1)
        median = input_values.flatten(1).median(dim=1).values[:, None]
        return SimpleNamespace(logits=10 * (peaks - median - self.margin))


def _tone(hz: float, duration_s: float, amplitude: float = 0.1) -> torch.Tensor:
    t = torch.arange(round(duration_s * SR)) / SR
    return amplitude * torch.sin(2 * math.pi * hz * t)


@pytest.fixture(scope="module")
def tone_classifier() -> AudioClassifier:
    config = ASTConfig(max_length=128, num_labels=len(CLASS_NAMES), id2label=dict(enumerate(CLASS_NAMES)))
    extractor = make_feature_extractor(max_length=128)
    # Each tone's loudest mel bin, from the very features the classifier computes.
    bins = []
    for hz in TONES_HZ:
        fbank = extractor(_tone(hz, 1.0).numpy(), sampling_rate=SR, return_tensors="pt").input_values[0]
        bins.append(int(fbank.mean(dim=0).argmax()))
    assert len(set(bins)) == len(bins)
    return AudioClassifier(ToneBands(config, bins), extractor)


def _recording(seed: int = 0, duration_s: float = 16.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    waveform = torch.randn(round(duration_s * SR), generator=generator) * 10 ** (NOISE_DBFS / 20)
    for label, onset_s, length_s in PLACED:
        start = round(onset_s * SR)
        tone = _tone(TONES_HZ[label], length_s)
        waveform[start : start + tone.numel()] += tone
    return waveform


def test_the_tracker_merges_windows_and_drops_quiet_and_unsure_segments():
    """Hand-made window scores: window j covers segments j and j + 1; background -40 dB."""
    levels = torch.full((30,), -40.0)
    levels[[5, 6, 7, 9, 15, 16, 25]] = -20.0
    levels[20] = -36.0  # 4 dB above the background: below activity_db
    windows = [torch.tensor([0.5, 0.5])] * 30
    for j in range(4, 10):
        windows[j] = torch.tensor([0.9, 0.1])
    for j in range(14, 17):
        windows[j] = torch.tensor([0.1, 0.9])
    windows[24] = windows[25] = torch.tensor([0.55, 0.45])  # loud, but below min_confidence

    def run(thresholds, chunk=30):
        tracker = EventTracker(["a", "b"], 1.0, 2, thresholds)
        events = []
        for start in range(0, 30, chunk):
            tracker.push_levels(levels[start : start + chunk])
            for window in windows[start : start + chunk]:
                tracker.push_window(window)
            events += tracker.pop_events()
        return events + tracker.finish(30.0)

    rule = DetectionThresholds(min_confidence=0.6, activity_db=6.0, merge_gap_s=1.0)
    expected = [Event("a", 5.0, 10.0, 0.9), Event("b", 15.0, 17.0, 0.9)]
    assert [(e.label, e.onset_s, e.offset_s) for e in run(rule)] == [
        (e.label, e.onset_s, e.offset_s) for e in expected
    ]
    assert [e.confidence for e in run(rule)] == pytest.approx([0.9, 0.9])
    # Pushed a few segments at a time, as a stream: the same events.
    assert run(rule, chunk=3) == run(rule)
    # No merging across the one quiet segment at 8 s.
    split = run(DetectionThresholds(min_confidence=0.6, activity_db=6.0, merge_gap_s=0.0))
    assert [(e.label, e.onset_s, e.offset_s) for e in split] == [
        ("a", 5.0, 8.0),
        ("a", 9.0, 10.0),
        ("b", 15.0, 17.0),
    ]
    # A lower confidence bar keeps the unsure loud segment at 25 s; the one at 20 s (4 dB above the background)
    # also needs a lower activity bar, and is unsure too.
    assert [e.onset_s for e in run(DetectionThresholds(0.5, 6.0, 1.0))] == [5.0, 15.0, 25.0]
    assert [e.onset_s for e in run(DetectionThresholds(0.6, 3.0, 1.0))] == [5.0, 15.0]
    assert [e.onset_s for e in run(DetectionThresholds(0.5, 3.0, 1.0))] == [5.0, 15.0, 20.0, 25.0]


def test_a_steady_loud_background_is_not_an_event():
    tracker = EventTracker(["a", "b"], 1.0, 2, DetectionThresholds(0.5, 6.0, 0.0))
    tracker.push_levels(torch.full((40,), -10.0))
    for _ in range(40):
        tracker.push_window(torch.tensor([0.99, 0.01]))
    assert tracker.pop_events() + tracker.finish(40.0) == []


def test_the_tracker_decides_segments_as_it_goes_and_holds_a_bounded_state():
    tracker = EventTracker(["a", "b"], 0.5, 4, DetectionThresholds(0.5, 6.0, 0.0), lookahead_s=2.0)
    held = []
    for k in range(2000):  # 1000 s
        tracker.push_levels(torch.tensor([-20.0 if k % 40 < 3 else -50.0]))
        tracker.push_window(torch.tensor([0.9, 0.1]))
        held.append(len(tracker._levels) + len(tracker._sums))
    events = tracker.pop_events()
    assert len(events) >= 45  # one per 20 s, all but the last ones decided while streaming
    assert max(held) <= 2 * round(15 / 0.5) + 4 + round(2 / 0.5) + 2


def test_detect_finds_the_placed_tones_within_one_hop(tone_classifier):
    detection = tone_classifier.detect(_recording(), name="tones")
    hop = detection.hop_s
    found = [(e.label, e.onset_s, e.offset_s) for e in detection.events]
    assert [label for label, _, _ in found] == [CLASS_NAMES[label] for label, _, _ in PLACED]
    for (_, onset, offset), (_, true_onset, length) in zip(found, PLACED):
        assert abs(onset - true_onset) <= hop + 1e-6
        assert abs(offset - (true_onset + length)) <= hop + 1e-6
    assert detection.counts() == {name: int(i in (0, 2, 5)) for i, name in enumerate(CLASS_NAMES)}
    assert detection.rate_per_minute()["Cough"] == pytest.approx(60 / 16)


def test_streaming_in_any_chunks_gives_the_same_events_as_a_file(tone_classifier, tmp_path):
    waveform = _recording(seed=1)
    whole = tone_classifier.detect(waveform)
    for chunk_s in (0.25, 1.7, 5.0):
        detector = StreamingDetector(tone_classifier)
        events = []
        for chunk in waveform.split(round(chunk_s * SR)):
            events += detector.push(chunk)
            # A window plus the chunk: nothing older is kept.
            assert detector.held_samples <= tone_classifier.window_samples + chunk.numel() + detector.hop
        events += detector.finish()
        assert events == list(whole.events)
    path = tmp_path / "tones.wav"
    sf.write(path, waveform.numpy(), SR, subtype="FLOAT")
    assert tone_classifier.detect(path).events == whole.events


def test_detect_refuses_bad_audio_with_the_time(tone_classifier):
    waveform = _recording()
    waveform[SR * 5] = float("nan")
    with pytest.raises(AudioInputError, match=r"sample 80000 \(at 5.000 s\) is nan"):
        tone_classifier.detect(waveform)


def test_detection_thresholds_round_trip_and_bad_files_name_the_field(tmp_path):
    thresholds = DetectionThresholds(0.7, 9.0, 0.25)
    thresholds.save(tmp_path / DETECTION_FILE, split="validation", f1=0.8)
    assert DetectionThresholds.for_model(tmp_path) == thresholds
    assert DetectionThresholds.for_model(tmp_path / "elsewhere") == DetectionThresholds()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"min_confidence": "high"}))
    with pytest.raises(ValueError, match=r"bad.json: min_confidence must be a number, got 'high'"):
        DetectionThresholds.load(bad)
    bad.write_text(json.dumps({"min_confidence": 1.5}))
    with pytest.raises(ValueError, match=r"bad.json: min_confidence must be within \[0, 1\]"):
        DetectionThresholds.load(bad)


@pytest.fixture
def tone_model_dir(tone_classifier, tmp_path, monkeypatch):
    """``AudioClassifier.from_pretrained`` of any path gives the tone classifier (the CLI loads by name)."""
    monkeypatch.setattr(AudioClassifier, "from_pretrained", classmethod(lambda cls, *a, **k: tone_classifier))
    return tmp_path / "tone_model"


def test_cli_detect_writes_csv_json_and_audacity_labels(tone_model_dir, tone_classifier, tmp_path, capsys):
    recordings = []
    for seed in (0, 1):
        path = tmp_path / "in" / f"rec{seed}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, _recording(seed=seed).numpy(), SR, subtype="FLOAT")
        recordings.append(path)
    expected = {str(path): list(tone_classifier.detect(path).events) for path in recordings}

    assert cli.main(["detect", *map(str, recordings), "--model", str(tone_model_dir)]) == 0
    rows = {
        file: [(e.label, e.onset_s, e.offset_s) for e in events]
        for file, events in events_from_csv(capsys.readouterr().out).items()
    }
    assert rows == {
        file: [(e.label, round(e.onset_s, 3), round(e.offset_s, 3)) for e in events]
        for file, events in expected.items()
    }

    out = tmp_path / "events.jsonl"
    assert (
        cli.main(
            [
                "detect",
                str(tmp_path / "in"),
                "--model",
                str(tone_model_dir),
                "--format",
                "json",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["file"] for line in lines] == [str(path) for path in recordings]
    assert lines[0]["counts"]["Cough"] == 1 and lines[0]["rate_per_minute"]["Cough"] == pytest.approx(60 / 16)
    assert set(lines[0]["thresholds"]) == {"min_confidence", "activity_db", "merge_gap_s"}

    labels = tmp_path / "labels"
    assert (
        cli.main(
            [
                "detect",
                *map(str, recordings),
                "--model",
                str(tone_model_dir),
                "--format",
                "audacity",
                "--out",
                str(labels),
            ]
        )
        == 0
    )
    for path in recordings:
        text = (labels / f"{path.stem}.txt").read_text()
        assert all(len(line.split("\t")) == 3 for line in text.splitlines())
        parsed = events_from_audacity(text, source=path.name)
        assert [(e.label, e.onset_s) for e in parsed] == [
            (e.label, round(e.onset_s, 3)) for e in expected[str(path)]
        ]


def test_cli_detect_user_errors_are_one_line(tone_model_dir, tmp_path, capsys):
    good = tmp_path / "good.wav"
    sf.write(good, _recording().numpy(), SR, subtype="FLOAT")
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio\n" * 30)
    out = tmp_path / "events.csv"
    assert (
        cli.main(["detect", str(good), str(broken), "--model", str(tone_model_dir), "--out", str(out)]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "broken.wav: not a readable audio file" in err
    # The readable recording's events were written all the same.
    assert list(events_from_csv(out.read_text())) == [str(good)]
    assert (
        cli.main(["detect", str(good), str(good), "--model", str(tone_model_dir), "--format", "audacity"])
        == 2
    )
    assert "give a folder with --out" in capsys.readouterr().err
    thresholds = tmp_path / "t.json"
    thresholds.write_text(json.dumps({"activity_db": -3}))
    assert (
        cli.main(["detect", str(good), "--model", str(tone_model_dir), "--thresholds", str(thresholds)]) == 2
    )
    assert "t.json: activity_db and merge_gap_s must not be negative" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_stream_audio_concatenates_to_load_audio_and_catches_truncation(tmp_path, suffix):
    generator = np.random.default_rng(0)
    stereo = (0.1 * generator.standard_normal((44_100 * 7, 2))).astype(np.float32)
    path = tmp_path / f"stereo{suffix}"
    sf.write(path, stereo, 44_100)
    for chunk_s in (1.0, 3.5, 7.0, 30.0):
        chunks = list(stream_audio(path, chunk_s=chunk_s))
        assert torch.equal(torch.cat(chunks), load_audio(path))
        assert max(chunk.numel() for chunk in chunks) <= round(chunk_s * SR) + 1
    if suffix == ".wav":
        cut = tmp_path / "cut.wav"
        cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(AudioInputError, match="cut.wav: the file is truncated"):
            list(stream_audio(cut, chunk_s=2.0))


def _tone_soundscapes(count: int, seed: int, overlap_share: float = 0.3) -> list[Soundscape]:
    """Soundscapes of tone "clips" (class c: ``TONES_HZ[c]``) mixed as the benchmark mixes real clips."""
    soundscapes = []
    for index in range(count):
        generator = torch.Generator().manual_seed(seed + index)
        labels = torch.randint(len(CLASS_NAMES), (6,), generator=generator).tolist()
        clips = [(CLASS_NAMES[c], _tone(TONES_HZ[c], 0.4 + 0.2 * (i % 4))) for i, c in enumerate(labels)]
        params = SoundscapeParams(overlap_share=overlap_share)
        waveform, events = mix_soundscape(clips, duration_s=30.0, generator=generator, params=params)
        soundscapes.append(Soundscape(f"tones_{index}", waveform, events, [""] * len(events)))
    return soundscapes


def test_replayed_window_scores_give_what_detect_gives(tone_classifier):
    soundscape = _tone_soundscapes(1, seed=5)[0]
    scores = window_scores(tone_classifier, soundscape.waveform)
    for thresholds in (
        DetectionThresholds(),
        DetectionThresholds(0.8, 12.0, 0.0),
        DetectionThresholds(0.3, 3.0, 1.0),
    ):
        detected = tone_classifier.detect(soundscape.waveform, thresholds=thresholds).events
        assert scores.events(tone_classifier.labels, thresholds) == list(detected)


def test_tuning_picks_the_grid_point_with_the_best_event_f1(tone_classifier):
    soundscapes = _tone_soundscapes(3, seed=0)
    thresholds, scores = tune_thresholds(tone_classifier, soundscapes)
    truth = {s.name: s.events for s in soundscapes}
    recorded = {s.name: window_scores(tone_classifier, s.waveform) for s in soundscapes}
    for values in [
        (0.3, 15.0, 0.0),
        (0.9, 3.0, 1.0),
        (thresholds.min_confidence, thresholds.activity_db, 0.0),
    ]:
        other = DetectionThresholds(*values)
        predicted = {name: r.events(tone_classifier.labels, other) for name, r in recorded.items()}
        assert score_events(truth, predicted).f1 <= scores.f1
    # The tones are unmistakable, so what is missed is the rule's: a segment is one class at a time, so of two
    # overlapping events one at most is found, and the quietest (0 dB SNR) do not stand out from the background.
    assert scores.f1 >= 0.7
    _, apart = tune_thresholds(tone_classifier, _tone_soundscapes(3, seed=0, overlap_share=0.0))
    assert apart.f1 >= 0.85 and apart.count_error <= 1.0


def test_tune_detection_writes_the_model_file_and_keeps_an_existing_one(
    tiny_model_dir, synth_release, tmp_path
):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    written = tune_detection(model, synth_release, count=2, duration_s=20.0)
    assert written == model / DETECTION_FILE
    chosen = json.loads(written.read_text())
    assert chosen["chosen_on"]["split"] == "validation"
    assert AudioClassifier.from_pretrained(model).detection_thresholds == DetectionThresholds.load(written)
    before = written.read_bytes()
    with pytest.raises(ValueError, match="exists: keep it, or pass --overwrite"):
        tune_detection(model, synth_release, count=2, duration_s=20.0)
    assert written.read_bytes() == before


def test_a_short_lookahead_decides_alike_however_the_audio_is_chunked(tone_classifier):
    waveform = _recording(seed=2)
    results = []
    for chunk_s in (0.5, 3.0, 16.0):
        detector = StreamingDetector(tone_classifier, lookahead_s=1.0)
        events = []
        for chunk in waveform.split(round(chunk_s * SR)):
            events += detector.push(chunk)
        results.append(events + detector.finish())
    assert results[0] == results[1] == results[2] and len(results[0]) == len(PLACED)


def test_the_background_looks_no_further_than_the_lookahead_whatever_has_arrived():
    """Segment 20 is 6 dB above the quiet past; 15 s of loud audio starts right after it. With a 2 s lookahead
    its background is the quiet past, whether the loud levels arrived before its windows or after."""
    levels = torch.tensor([-40.0] * 20 + [-34.0] + [-20.0] * 20)
    window = torch.tensor([0.9, 0.1])

    def run(levels_first: bool) -> list[Event]:
        tracker = EventTracker(["a", "b"], 1.0, 1, DetectionThresholds(0.5, 3.0, 0.0), lookahead_s=2.0)
        if levels_first:
            tracker.push_levels(levels)
        for k in range(len(levels)):
            if not levels_first:
                tracker.push_levels(levels[k : k + 1])
            tracker.push_window(window)
        return tracker.pop_events() + tracker.finish(float(len(levels)))

    assert run(levels_first=True) == run(levels_first=False)
    assert run(levels_first=True)[0].onset_s == 20.0
