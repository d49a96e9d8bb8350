"""Events: event-based F1, count error and speed of ``AudioClassifier.detect`` on synthetic soundscapes, and
the peak memory of detecting an hour-long file.

Soundscapes (``data.soundscapes``) are built from the test split of the default synthetic release, which the
quickstart model never trained on; the thresholds are the model's ``detection.json`` if it has one, else the
defaults (chosen on validation soundscapes, ``vocalsound-hf tune-detection``). Speed is seconds of audio per
second of wall time (x real time) for the fp32 model and the fast path, the two timed in alternation, one
soundscape at a time. Peak memory: a fresh process detects a one-hour and a one-minute WAV file (the
soundscapes repeated), and reports its peak resident set size; the two should be close, since ``detect``
streams the file through the decoder.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torchcodec.encoders import AudioEncoder
from tqdm.auto import tqdm

from vocalsound_hf.data.soundscapes import Soundscape, soundscapes_of_split
from vocalsound_hf.event_metrics import OFFSET_LENGTH_SHARE, ONSET_COLLAR_S, score_events
from vocalsound_hf.fileio import staged_path
from vocalsound_hf.inference.classifier import AudioClassifier

REPO = Path(__file__).resolve().parents[1]
SAMPLING_RATE = 16_000
PATHS = {"fp32": False, "fast": True}


def _timed_detections(classifiers: dict[str, AudioClassifier], soundscapes: list[Soundscape]) -> dict:
    """Each path's events per soundscape and its total wall time, the paths alternating per soundscape."""
    events = {name: {} for name in classifiers}
    seconds = dict.fromkeys(classifiers, 0.0)
    for classifier in classifiers.values():  # warm-up: packing of the fast path's weights, allocator
        classifier.detect(soundscapes[0].waveform[: 10 * SAMPLING_RATE])
    bar = tqdm(soundscapes, desc="detecting", unit="soundscape", disable=False)
    for soundscape in bar:
        for name, classifier in classifiers.items():
            start = time.perf_counter()
            detection = classifier.detect(soundscape.waveform, name=soundscape.name)
            seconds[name] += time.perf_counter() - start
            events[name][soundscape.name] = list(detection.events)
    return {"events": events, "seconds": seconds}


def _long_file(soundscapes: list[Soundscape], cache_dir: Path, minutes: int) -> Path:
    """A WAV of ``minutes`` of the soundscapes one after another (16-bit PCM), made once per cache."""
    path = cache_dir / f"soundscapes_{minutes}min.wav"
    if not path.is_file():
        audio = torch.cat([s.waveform for s in soundscapes])
        repeats = -(-minutes * 60 * SAMPLING_RATE // audio.numel())
        audio = audio.repeat(repeats)[: minutes * 60 * SAMPLING_RATE]
        encoded = AudioEncoder(audio[None], sample_rate=SAMPLING_RATE).to_tensor("wav")
        cache_dir.mkdir(parents=True, exist_ok=True)
        with staged_path(path) as tmp:
            tmp.write_bytes(encoded.numpy().tobytes())
            tmp.replace(path)
    return path


def peak_rss_mb(model: Path, audio: Path, fast: bool) -> dict:
    """Peak RSS (MB) of a fresh process that loads ``model`` and detects ``audio``; also its event count."""
    command = [sys.executable, "-m", "benchmarks.bench_events", str(model), str(audio)]
    command += ["--threads", str(torch.get_num_threads())] + (["--fast"] if fast else [])
    result = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_events(release: Path, model: Path | None, cache_dir: Path, settings: dict) -> dict:
    """The events section of ``results.json``; without a quickstart-trained ``model``, a note saying so."""
    if model is None:
        return {"skipped": "no quickstart-trained model (make quickstart writes outputs/quickstart/model)"}
    soundscapes = soundscapes_of_split(
        release, "test", count=settings["soundscapes"], duration_s=settings["soundscape_s"], seed=0
    )
    classifiers = {name: AudioClassifier.from_pretrained(model, fast=fast) for name, fast in PATHS.items()}
    labels = classifiers["fp32"].labels
    timed = _timed_detections(classifiers, soundscapes)
    truth = {s.name: s.events for s in soundscapes}
    audio_s = sum(s.waveform.numel() for s in soundscapes) / SAMPLING_RATE
    result = {
        "model": str(model),
        "soundscapes": len(soundscapes),
        "soundscape_s": settings["soundscape_s"],
        "thresholds": classifiers["fp32"].detection_thresholds.to_dict(),
        "onset_collar_s": ONSET_COLLAR_S,
        "offset_length_share": OFFSET_LENGTH_SHARE,
        "threads": torch.get_num_threads(),
    }
    for name in PATHS:
        scores = score_events(truth, timed["events"][name], labels)
        result[name] = {
            "event_f1": scores.f1,
            "event_precision": scores.precision,
            "event_recall": scores.recall,
            "event_macro_f1": scores.macro_f1,
            "count_error": scores.count_error,
            "true_count": scores.true_count,
            "predicted_count": scores.predicted_count,
            # Strict JSON: a class with no truth events has no F1 (None).
            "per_class_f1": {label: values["f1"] for label, values in scores.to_dict()["per_class"].items()},
            "count_error_per_class": scores.count_error_per_class,
            "x_real_time": audio_s / timed["seconds"][name],
        }
    memory = {}
    for minutes in settings["memory_minutes"]:
        audio = _long_file(soundscapes, cache_dir, minutes)
        memory[f"{minutes}min"] = peak_rss_mb(model, audio, fast=True)
    result["peak_rss"] = memory
    return result


def main() -> None:
    """``python -m benchmarks.bench_events MODEL AUDIO [--fast]``: detect one file, print peak RSS as JSON."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("audio", type=Path)
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    classifier = AudioClassifier.from_pretrained(args.model, fast=args.fast)
    start = time.perf_counter()
    detection = classifier.detect(args.audio)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "audio_s": detection.duration_s,
                "events": len(detection.events),
                "x_real_time": detection.duration_s / seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
