"""Choosing the detection thresholds on validation soundscapes (``vocalsound-hf tune-detection``).

The model scores each soundscape's windows once; every candidate of ``THRESHOLD_GRID`` then replays those
scores through an ``EventTracker`` and is scored with the event-based F1 of ``event_metrics``. The best
micro F1 wins (ties: the lower count error, then the first in grid order). The soundscapes are built from a
split the model did not train on (``data.soundscapes``: the validation split by default), so the thresholds
are not fitted to the test soundscapes the benchmark reports.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.soundscapes import Soundscape, soundscapes_of_split
from ..event_metrics import EventScores, score_events
from ..events import Event
from .classifier import AudioClassifier
from .detection import DETECTION_FILE, DetectionThresholds, EventTracker, StreamingDetector

logger = logging.getLogger(__name__)

# Candidates: confidence of the top class, dB above the background, and the gap merged within one event.
THRESHOLD_GRID = {
    "min_confidence": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "activity_db": (3.0, 6.0, 9.0, 12.0, 15.0),
    "merge_gap_s": (0.0, 0.3, 0.6, 1.0),
}


@dataclass
class WindowScores:
    """What the model says of one recording: each window's probabilities (``None``: silent) and each
    segment's level; the tracker needs nothing else, so thresholds are tried without running the model again."""

    windows: list[torch.Tensor | None]
    levels: list[float]
    window_hops: int
    hop_s: float
    duration_s: float

    # The tracker interface of StreamingDetector, recording instead of deciding.
    def push_window(self, probabilities: torch.Tensor | None) -> None:
        self.windows.append(None if probabilities is None else probabilities.detach().float().cpu())

    def push_levels(self, levels: torch.Tensor) -> None:
        self.levels += levels.tolist()

    def pop_events(self) -> list[Event]:
        return []

    def finish(self, duration_s: float) -> list[Event]:
        self.duration_s = duration_s
        return []

    def events(self, labels: list[str], thresholds: DetectionThresholds) -> list[Event]:
        """The events ``thresholds`` give for these scores: what ``detect`` would find."""
        tracker = EventTracker(labels, self.hop_s, self.window_hops, thresholds)
        tracker.push_levels(torch.tensor(self.levels))
        for probabilities in self.windows:
            tracker.push_window(probabilities)
        return tracker.pop_events() + tracker.finish(self.duration_s)


def window_scores(classifier, waveform: torch.Tensor, hop_s: float | None = None) -> WindowScores:
    """Run ``classifier`` over a waveform once, keeping the window scores and segment levels."""
    recorder = WindowScores([], [], 0, 0.0, 0.0)
    detector = StreamingDetector(classifier, hop_s=hop_s, tracker=recorder)
    recorder.window_hops, recorder.hop_s = detector.window_hops, detector.hop_s
    detector.push(waveform)
    detector.finish()
    return recorder


def tune_thresholds(
    classifier, soundscapes: list[Soundscape], hop_s: float | None = None
) -> tuple[DetectionThresholds, EventScores]:
    """The ``THRESHOLD_GRID`` candidate with the best event-based F1 on ``soundscapes``, and its scores."""
    scores = {
        soundscape.name: window_scores(classifier, soundscape.waveform, hop_s)
        for soundscape in tqdm(soundscapes, desc="scoring windows", unit="soundscape")
    }
    truth = {soundscape.name: soundscape.events for soundscape in soundscapes}
    best = None
    grid = list(itertools.product(*THRESHOLD_GRID.values()))
    for values in tqdm(grid, desc="trying thresholds", unit="candidate"):
        thresholds = DetectionThresholds(**dict(zip(THRESHOLD_GRID, values)))
        predicted = {
            name: recording.events(classifier.labels, thresholds) for name, recording in scores.items()
        }
        result = score_events(truth, predicted, classifier.labels)
        key = (result.f1, -result.count_error)
        if best is None or key > best[0]:
            best = (key, thresholds, result)
    _, thresholds, result = best
    return thresholds, result


def tune_detection(
    model: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    split: str = "validation",
    count: int = 20,
    duration_s: float = 60.0,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Choose a model's detection thresholds on soundscapes of ``split`` and write them (``detection.json``).

    ``out`` defaults to the model directory's ``detection.json``, which ``AudioClassifier.from_pretrained``
    then reads; an existing file is kept unless ``overwrite``.
    """
    model_dir = Path(model)
    if out is None:
        if not model_dir.is_dir():
            raise ValueError(f"{model} is not a local model directory: give the thresholds file with --out")
        out = model_dir / DETECTION_FILE
    out = Path(out)
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists: keep it, or pass --overwrite to replace it")
    classifier = AudioClassifier.from_pretrained(model)
    soundscapes = soundscapes_of_split(data_dir, split, count, duration_s, seed)
    thresholds, result = tune_thresholds(classifier, soundscapes)
    thresholds.save(
        out,
        data_dir=str(data_dir),
        split=split,
        soundscapes=count,
        duration_s=duration_s,
        seed=seed,
        event_f1=round(result.f1, 4),
        count_error=round(result.count_error, 4),
    )
    logger.info(
        "%s: min_confidence %g, activity_db %g, merge_gap_s %g (event F1 %.3f, count error %.2f on %d %s soundscapes)",
        out,
        thresholds.min_confidence,
        thresholds.activity_db,
        thresholds.merge_gap_s,
        result.f1,
        result.count_error,
        count,
        split,
    )
    return out
