"""Synthetic soundscapes (their truth is where their sound is) and the scores of detected events."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vocalsound_hf.audio import load_audio
from vocalsound_hf.data.soundscapes import (
    PEAK,
    SoundscapeParams,
    active_span,
    background_noise,
    make_soundscapes,
    mix_soundscape,
    soundscapes_of_split,
)
from vocalsound_hf.event_metrics import ONSET_COLLAR_S, score_events
from vocalsound_hf.events import Event, event_counts, events_from_audacity, events_from_csv
from vocalsound_hf.release import CLASS_NAMES

SR = 16_000
# Small soundscapes of the shared synthetic release: a few clips each.
SCAPES = {"split": "test", "count": 3, "duration_s": 20.0, "seed": 0}


def _tone(seconds: float, pad_s: float = 0.3, frequency: float = 440.0) -> torch.Tensor:
    """A tone of ``seconds`` between ``pad_s`` of silence: its active part is known to the sample."""
    t = torch.arange(round(seconds * SR)) / SR
    silence = torch.zeros(round(pad_s * SR))
    return torch.cat([silence, 0.5 * torch.sin(2 * math.pi * frequency * t), silence])


def _clips(count: int) -> list[tuple[str, torch.Tensor]]:
    return [(CLASS_NAMES[i % 6], _tone(0.5 + 0.25 * (i % 4), frequency=300 + 50 * i)) for i in range(count)]


def _mix(seed: int, clips=None, duration_s: float = 60.0, params: SoundscapeParams | None = None):
    clips = _clips(8) if clips is None else clips
    params = params or SoundscapeParams()
    generator = torch.Generator().manual_seed(seed)
    return mix_soundscape(clips, duration_s=duration_s, generator=generator, params=params)


def _overlapping(events: list[Event]) -> int:
    """How many events overlap at least one other."""
    return sum(
        any(a is not b and a.onset_s < b.offset_s and b.onset_s < a.offset_s for b in events) for a in events
    )


def test_the_active_part_leaves_out_the_near_silence_around_a_clip():
    clip = torch.cat([_tone(1.0, pad_s=0.25), 10 ** (-40 / 20) * _tone(0.5, pad_s=0.0)])
    start, end = active_span(clip)
    assert abs(start - 0.25 * SR) <= 0.01 * SR
    assert abs(end - 1.25 * SR) <= 0.01 * SR  # the tail 40 dB down is near-silence too
    assert active_span(torch.zeros(SR)) is None


def test_truth_events_are_where_the_clips_are_and_the_rest_is_background():
    params = SoundscapeParams(snr_db=(10.0, 20.0))
    clips = _clips(8)
    mix, events = _mix(3, clips, params=params)
    background, level = background_noise(len(mix), torch.Generator().manual_seed(3), params)
    inside = torch.zeros(len(mix), dtype=torch.bool)
    for (label, clip), event in zip(clips, events):
        assert event.label == label
        start, end = round(event.onset_s * SR), round(event.offset_s * SR)
        inside[start:end] = True
        span = active_span(clip)
        assert end - start == span[1] - span[0]  # the active part, whole
        assert abs(event.duration_s - (len(clip) / SR - 0.6)) <= 0.011  # the tone, without its padding
    outside = ~inside
    scale = float(mix[outside] @ background[outside] / (background[outside] @ background[outside]))
    assert 0 < scale <= 1
    torch.testing.assert_close(mix[outside], scale * background[outside], rtol=0, atol=1e-6)
    for event in events:
        part = mix[round(event.onset_s * SR) : round(event.offset_s * SR)]
        # At least 10 dB above the background's nominal level (what SNRs are measured against).
        assert float(part.square().mean().sqrt()) >= 0.8 * scale * level * 10 ** (10 / 20)


def test_a_seed_gives_the_same_soundscape_and_another_seed_another():
    mix, events = _mix(5)
    again, events_again = _mix(5)
    assert torch.equal(mix, again) and events == events_again
    other, other_events = _mix(6)
    assert not torch.equal(mix, other) and other_events != events


@pytest.mark.parametrize(("share", "overlapping"), [(0.0, 0), (0.25, 2), (0.5, 4), (1.0, 8)])
def test_the_configured_share_of_events_overlap(share, overlapping):
    params = SoundscapeParams(overlap_share=share)
    _, events = _mix(1, _clips(8), params=params)
    assert _overlapping(events) == overlapping
    if share == 0:  # events that do not overlap lie at least min_gap_s apart
        ordered = sorted(events, key=lambda e: e.onset_s)
        assert min(b.onset_s - a.offset_s for a, b in zip(ordered, ordered[1:])) >= params.min_gap_s - 1e-9


def test_a_loud_mix_is_scaled_below_full_scale():
    params = SoundscapeParams(snr_db=(20.0, 20.0), background_dbfs=(-10.0, -10.0))
    mix, _ = _mix(2, params=params)
    assert float(mix.abs().max()) == pytest.approx(PEAK, abs=1e-6)


def test_silent_clips_clips_that_do_not_fit_and_bad_parameters_are_refused():
    with pytest.raises(ValueError, match=r"clip 1 \(Sigh\) is silent"):
        _mix(0, [("Cough", _tone(1.0)), ("Sigh", torch.zeros(SR))])
    with pytest.raises(ValueError, match="do not fit in 5.0 s"):
        _mix(0, [("Cough", _tone(3.0)), ("Sigh", _tone(3.0))], duration_s=5.0)
    with pytest.raises(ValueError, match="soundscape parameter snr_db"):
        SoundscapeParams(snr_db=(20.0, 0.0))


@pytest.fixture(scope="module")
def soundscape_dir(synth_release, tmp_path_factory):
    return make_soundscapes(synth_release, tmp_path_factory.mktemp("scapes") / "soundscapes", **SCAPES)


def test_the_files_written_hold_the_soundscapes_and_their_truth(synth_release, soundscape_dir):
    scapes = soundscapes_of_split(synth_release, **SCAPES)
    manifest = json.loads((soundscape_dir / "soundscapes.json").read_text())
    assert (manifest["seed"], manifest["split"], manifest["count"]) == (0, "test", 3)
    assert [entry["file"] for entry in manifest["soundscapes"]] == [f"soundscape_00{i}.wav" for i in range(3)]
    truth_csv = events_from_csv((soundscape_dir / "truth.csv").read_text())
    sources = []
    for scape, entry in zip(scapes, manifest["soundscapes"]):
        assert scape.events and len(scape.waveform) == 20 * SR
        decoded = load_audio(soundscape_dir / entry["file"])
        torch.testing.assert_close(decoded, scape.waveform, rtol=0, atol=0.5 / 32768 + 1e-7)
        labels = events_from_audacity((soundscape_dir / f"{scape.name}.txt").read_text())
        for events in (labels, truth_csv[entry["file"]]):
            assert [e.label for e in events] == [e.label for e in scape.events]
            for read, made in zip(events, scape.events):
                assert read.onset_s == pytest.approx(made.onset_s, abs=5e-4)
                assert read.offset_s == pytest.approx(made.offset_s, abs=5e-4)
        assert entry["counts"] == event_counts(scape.events, CLASS_NAMES)
        assert entry["sources"] == scape.sources
        sources += scape.sources
    assert len(sources) == len(set(sources))  # drawn without replacement: the split has enough clips
    assert sorted(p.name for p in soundscape_dir.iterdir()) == sorted(
        ["soundscapes.json", "truth.csv"]
        + [f"soundscape_00{i}.{ext}" for i in range(3) for ext in ("wav", "txt")]
    )


def test_soundscapes_are_made_again_byte_for_byte_and_differ_for_another_seed(
    synth_release, soundscape_dir, tmp_path
):
    again = make_soundscapes(synth_release, tmp_path / "again", **SCAPES)
    for name in ("soundscape_000.wav", "soundscape_002.wav", "truth.csv"):
        assert (again / name).read_bytes() == (soundscape_dir / name).read_bytes()
    other = soundscapes_of_split(synth_release, **{**SCAPES, "seed": 1, "count": 1})
    assert not torch.equal(other[0].waveform, load_audio(soundscape_dir / "soundscape_000.wav"))


def test_a_folder_that_is_not_empty_or_a_training_split_is_refused(synth_release, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"taken: exists and is not an empty folder"):
        make_soundscapes(synth_release, tmp_path / "taken")
    with pytest.raises(ValueError, match="split must be one of validation, test"):
        soundscapes_of_split(synth_release, "train")
    assert make_soundscapes(synth_release, tmp_path / "empty", count=1, duration_s=10.0).is_dir()


# ---------------------------------------------------------------------------------------------------
# Scores


def _truth() -> dict[str, list[Event]]:
    return {
        "a.wav": [Event("Cough", 1.0, 2.0), Event("Sigh", 4.0, 6.0)],
        "b.wav": [Event("Laughter", 2.0, 5.0)],
    }


def test_perfect_detections_score_one_and_count_no_error():
    scores = score_events(_truth(), _truth())
    assert (scores.f1, scores.precision, scores.recall, scores.macro_f1) == pytest.approx((1, 1, 1, 1))
    assert scores.count_error == 0 and (scores.true_count, scores.predicted_count) == (3, 3)
    assert set(scores.per_class) == set(CLASS_NAMES) == set(scores.count_error_per_class)
    assert scores.per_class["Cough"]["f1"] == pytest.approx(1.0)
    assert math.isnan(scores.per_class["Sneeze"]["f1"])  # no truth, no detections: left out of macro_f1
    json.dumps(scores.to_dict(), allow_nan=False)
    assert scores.to_dict()["per_class"]["Sneeze"]["f1"] is None


def test_an_onset_outside_the_collar_is_a_miss_and_one_inside_a_hit():
    late = _truth()
    late["a.wav"][0] = Event("Cough", 1.0 + ONSET_COLLAR_S + 0.1, 2.0)
    scores = score_events(_truth(), late)
    # 2 of 3 detections match 2 of 3 truth events.
    assert (scores.precision, scores.recall, scores.f1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert scores.per_class["Cough"]["f1"] == 0 and scores.count_error == 0
    # Macro: Cough 0, Sigh 1, Laughter 1.
    assert scores.macro_f1 == pytest.approx(2 / 3)
    near = _truth()
    near["a.wav"][0] = Event("Cough", 1.0 + ONSET_COLLAR_S - 0.1, 2.0)
    assert score_events(_truth(), near).f1 == pytest.approx(1.0)


def test_a_wrong_label_is_a_miss_and_a_false_alarm_and_two_count_errors():
    wrong = _truth()
    wrong["a.wav"][1] = Event("Sneeze", 4.0, 6.0)
    scores = score_events(_truth(), wrong)
    assert (scores.precision, scores.recall) == pytest.approx((2 / 3, 2 / 3))
    # Sigh one short and Sneeze one over in a.wav, over 2 recordings.
    assert scores.count_error_per_class["Sigh"] == scores.count_error_per_class["Sneeze"] == 0.5
    assert scores.count_error == 1.0
    assert scores.per_class["Sneeze"]["precision"] == 0 and math.isnan(scores.per_class["Sneeze"]["recall"])


def test_an_extra_detection_lowers_precision_and_counts_one_too_many():
    extra = _truth()
    extra["b.wav"] = [*extra["b.wav"], Event("Laughter", 8.0, 9.0)]
    scores = score_events({"b.wav": _truth()["b.wav"]}, {"b.wav": extra["b.wav"]})
    assert (scores.precision, scores.recall, scores.f1) == pytest.approx((0.5, 1.0, 2 / 3))
    assert scores.count_error == 1 and scores.count_error_per_class["Laughter"] == 1
    assert (scores.true_count, scores.predicted_count, scores.recordings) == (1, 2, 1)


def test_a_class_with_no_detections_scores_zero_and_bad_input_is_named():
    scores = score_events(_truth(), {"a.wav": _truth()["a.wav"]})  # b.wav: nothing detected
    assert scores.per_class["Laughter"]["f1"] == 0 and scores.macro_f1 == pytest.approx(2 / 3)
    assert scores.count_error == 0.5
    with pytest.raises(ValueError, match="'c.wav', which the truth does not list"):
        score_events(_truth(), {"c.wav": []})
    with pytest.raises(ValueError, match="a.wav: event label 'Burp' is not one of"):
        score_events(_truth(), {"a.wav": [Event("Burp", 1.0, 2.0)]})
