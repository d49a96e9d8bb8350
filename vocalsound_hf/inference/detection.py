"""Sound events from sliding windows: where each laugh, cough or sniff of a long or live recording is.

The classifier scores windows of its own length (``input_tdim`` frames) that start every ``hop`` samples.
The recording is cut into segments of one hop; a segment takes the mean class probabilities of the windows
that cover its midpoint, so a short sound shows in every window around it, and it is *active* when

- it is louder than the recording's background by ``activity_db`` (the background is the median level of the
  segment levels around it, so a steady noise floor is not an event, whatever its level), and
- its top class has at least ``min_confidence``.

Runs of active segments of one class become events; two events of a class that are at most ``merge_gap_s``
apart become one. Segments are one class at a time: overlapping sounds of two classes give one event.

``EventTracker`` is that rule, fed window scores and segment levels as they arrive; ``StreamingDetector``
feeds it from audio pushed chunk by chunk (a file as it is decoded, a microphone), holding a window of audio
and a few segments at a time, so memory does not grow with the recording's length.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from ..audio import STREAM_CHUNK_S, AudioInputError, check_finite, stream_audio
from ..events import Event, event_counts, event_rates, events_summary
from ..fileio import write_text_atomically
from .windows import SILENCE_DBFS, WINDOW_BATCH_SIZE, rms_dbfs

logger = logging.getLogger(__name__)

# Where a model directory keeps the thresholds chosen for it on validation soundscapes (``tune-detection``).
DETECTION_FILE = "detection.json"
# Windows start this many times per window length: the events' time resolution is one hop.
HOPS_PER_WINDOW = 8
# The background level of a segment: the median of the segment levels within BACKGROUND_CONTEXT_S on either
# side (vocal sounds fill under half of a recording). A low quantile would land in near-silent stretches,
# where the ordinary background then reads as events: validation event-F1 0.34 at the 10th percentile,
# 0.44 at the median (quickstart model, BENCHMARKS.md, Events).
BACKGROUND_QUANTILE = 0.5
BACKGROUND_CONTEXT_S = 15.0


@dataclass(frozen=True)
class DetectionThresholds:
    """The rule that turns window scores into events (module docstring).

    The defaults were chosen by ``vocalsound-hf tune-detection`` for the quickstart model on 20 one-minute
    soundscapes of the synthetic release's validation split (event-F1 0.45 there; BENCHMARKS.md, Events);
    a model directory's ``detection.json`` (written by the same command for that model) takes their place.
    """

    min_confidence: float = 0.6
    activity_db: float = 3.0
    merge_gap_s: float = 0.6

    def __post_init__(self):
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence must be within [0, 1], got {self.min_confidence}")
        if self.activity_db < 0 or self.merge_gap_s < 0:
            raise ValueError("activity_db and merge_gap_s must not be negative")

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path, **provenance) -> None:
        """Write ``path`` atomically: the thresholds and, under ``chosen_on``, how they were chosen."""
        text = json.dumps({**self.to_dict(), "chosen_on": provenance}, indent=2, allow_nan=False)
        write_text_atomically(path, text + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DetectionThresholds:
        """The thresholds of a ``detection.json``; ``ValueError`` naming the file and field for a bad one."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a readable detection file ({err})") from None
        values = {}
        for field in fields(cls):
            value = data.get(field.name, field.default) if isinstance(data, dict) else None
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{path}: {field.name} must be a number, got {value!r}")
            values[field.name] = float(value)
        try:
            return cls(**values)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    @classmethod
    def for_model(cls, model_dir: str | Path) -> DetectionThresholds:
        """The ``detection.json`` of a local model directory, or the defaults."""
        path = Path(model_dir) / DETECTION_FILE
        return cls.load(path) if path.is_file() else cls()


class NonFiniteScores(ArithmeticError):
    """The model gave NaN or infinite scores for a window (audio far beyond full scale, or broken weights)."""


class EventTracker:
    """Events from window probabilities and segment levels pushed in time order (module docstring).

    Window ``j`` starts at segment ``j`` and covers segments ``j`` to ``j + window_hops - 1``. A segment is
    decided once the last window covering it and the segment levels of its background context have
    arrived, so the tracker holds about ``window_hops`` plus twice the context's segments.
    """

    def __init__(
        self,
        labels: list[str],
        hop_s: float,
        window_hops: int,
        thresholds: DetectionThresholds,
        lookahead_s: float = BACKGROUND_CONTEXT_S,
    ):
        self.labels = list(labels)
        self.hop_s = hop_s
        self.window_hops = window_hops
        self.thresholds = thresholds
        self._context = max(1, round(BACKGROUND_CONTEXT_S / hop_s))
        # How far past a segment its background looks: the delay before it is decided.
        self._lookahead = min(self._context, round(lookahead_s / hop_s))
        self._levels: deque[float] = deque()  # levels of segments _levels_from, _levels_from + 1, ...
        self._levels_from = 0
        self._num_levels = 0
        self._sums: dict[int, torch.Tensor] = {}  # summed probabilities of undecided segments
        self._counts: dict[int, int] = {}
        self._num_windows = 0
        self._next_segment = 0
        self._open: list | None = None  # [label, first segment, last segment, confidences]
        self._done: list[Event] = []
        self._duration_s: float | None = None

    def push_window(self, probabilities: torch.Tensor | None) -> None:
        """The next window's class probabilities, ``None`` for a window too quiet to classify."""
        j = self._num_windows
        self._num_windows += 1
        if probabilities is not None:
            probabilities = probabilities.detach().float().cpu()
            for k in range(j, j + self.window_hops):
                self._sums[k] = self._sums[k] + probabilities if k in self._sums else probabilities.clone()
                self._counts[k] = self._counts.get(k, 0) + 1
        self._decide_ready()

    def push_levels(self, levels: torch.Tensor) -> None:
        """RMS levels (dBFS) of the next segments, in order."""
        self._levels.extend(levels.tolist())
        self._num_levels += levels.numel()
        self._decide_ready()

    def pop_events(self) -> list[Event]:
        """The events completed since the last call."""
        done, self._done = self._done, []
        return done

    def finish(self, duration_s: float) -> list[Event]:
        """Decide every remaining segment of a recording of ``duration_s`` seconds; the last events."""
        self._duration_s = duration_s
        while self._next_segment < self._num_levels:
            self._decide(self._next_segment)
        self._close()
        return self.pop_events()

    def _decide_ready(self) -> None:
        # Segment k needs windows 0..k (the last one covering it) and the levels up to k + lookahead.
        while self._next_segment < min(self._num_windows, self._num_levels - self._lookahead):
            self._decide(self._next_segment)
        # Levels older than the next segment's background context are not needed again.
        while self._levels_from < self._next_segment - self._context:
            self._levels.popleft()
            self._levels_from += 1

    def _background(self, k: int) -> float:
        # Up to the lookahead only, however far the pushed levels reach, so chunking never changes a decision.
        lo = max(k - self._context, self._levels_from)
        hi = min(k + self._lookahead + 1, self._num_levels)
        levels = [self._levels[i - self._levels_from] for i in range(lo, hi)]
        finite = torch.tensor([level for level in levels if math.isfinite(level)] or [-math.inf])
        return torch.quantile(finite, BACKGROUND_QUANTILE).item() if finite.numel() > 1 else finite.item()

    def _decide(self, k: int) -> None:
        self._next_segment = k + 1
        level = self._levels[k - self._levels_from]
        sums, count = self._sums.pop(k, None), self._counts.pop(k, 0)
        active_label, confidence = None, 0.0
        loud = level >= SILENCE_DBFS and level >= self._background(k) + self.thresholds.activity_db
        if loud and count:
            probabilities = sums / count
            confidence, index = (value.item() for value in probabilities.max(dim=0))
            if confidence >= self.thresholds.min_confidence:
                active_label = self.labels[int(index)]
        gap_segments = self.thresholds.merge_gap_s / self.hop_s + 1e-9
        if self._open is not None and (
            (active_label is not None and active_label != self._open[0])
            or k - self._open[2] - 1 > gap_segments
        ):
            self._close()
        if active_label is None:
            return
        if self._open is None:
            self._open = [active_label, k, k, [confidence]]
        else:
            self._open[2] = k
            self._open[3].append(confidence)

    def _close(self) -> None:
        if self._open is None:
            return
        label, first, last, confidences = self._open
        self._open = None
        offset_s = (last + 1) * self.hop_s
        if self._duration_s is not None:
            offset_s = min(offset_s, self._duration_s)
        self._done.append(Event(label, first * self.hop_s, offset_s, sum(confidences) / len(confidences)))


class StreamingDetector:
    """Events of audio pushed chunk by chunk at the classifier's rate: a decoded file or a microphone.

    Holds the samples from the next window's start on (at most a window plus a chunk) and the tracker's few
    undecided segments; windows are classified as soon as their audio is there, in batches of
    ``WINDOW_BATCH_SIZE``. A window quieter than ``SILENCE_DBFS`` is not classified.
    """

    def __init__(
        self,
        classifier,
        thresholds: DetectionThresholds | None = None,
        hop_s: float | None = None,
        tracker: EventTracker | None = None,
        lookahead_s: float = BACKGROUND_CONTEXT_S,
    ):
        self.classifier = classifier
        self.window = classifier.window_samples
        hop_s = classifier.window_s / HOPS_PER_WINDOW if hop_s is None else hop_s
        self.hop = round(hop_s * classifier.sampling_rate)
        if not 0 < self.hop <= self.window:
            raise ValueError(f"the hop must be within (0, {classifier.window_s:.2f}] s, got {hop_s} s")
        self.hop_s = self.hop / classifier.sampling_rate
        # Segments whose midpoint a window covers: j .. j + window_hops - 1.
        self.window_hops = window_hops = math.ceil(self.window / self.hop - 0.5)
        self.tracker = tracker or EventTracker(
            classifier.labels, self.hop_s, window_hops, thresholds or DetectionThresholds(), lookahead_s
        )
        self._buffer = torch.empty(0)
        self._buffer_start = 0  # the sample index of _buffer[0] in the recording
        self._received = 0
        self._next_window = 0  # start sample of the next window to classify
        self._next_segment = 0  # start sample of the next segment whose level is unknown

    @property
    def duration_s(self) -> float:
        """Seconds of audio pushed so far."""
        return self._received / self.classifier.sampling_rate

    @property
    def held_samples(self) -> int:
        """Samples held for windows still to classify: at most a window plus the last chunk pushed."""
        return self._buffer.numel()

    def push(self, samples: torch.Tensor) -> list[Event]:
        """Add the next samples (mono, the classifier's rate); the events completed so far."""
        samples = samples.reshape(-1).float()
        self._buffer = torch.cat([self._buffer, samples])
        self._received += samples.numel()
        self._levels(final=False)
        self._classify(final=False)
        return self.tracker.pop_events()

    def finish(self) -> list[Event]:
        """The recording ended: classify the last windows (shorter ones are padded, as short clips are)."""
        self._levels(final=True)
        self._classify(final=True)
        return self.tracker.finish(self.duration_s)

    def _view(self, start: int, end: int) -> torch.Tensor:
        return self._buffer[start - self._buffer_start : end - self._buffer_start]

    def _levels(self, final: bool) -> None:
        segments = []
        while self._next_segment + self.hop <= self._received or (
            final and self._next_segment < self._received
        ):
            end = min(self._next_segment + self.hop, self._received)
            segments.append(self._view(self._next_segment, end))
            self._next_segment = end
        if segments:
            self.tracker.push_levels(torch.stack([rms_dbfs(segment) for segment in segments]))

    def _ready_windows(self, final: bool) -> list[int]:
        starts = []
        last_start = max(self._received - self.window, 0)
        while self._next_window + self.window <= self._received or (
            final and self._next_window < self._received and self._next_window <= last_start + self.hop - 1
        ):
            starts.append(self._next_window)
            self._next_window += self.hop
        return starts

    def _classify(self, final: bool) -> None:
        starts = self._ready_windows(final)
        for batch in (starts[i : i + WINDOW_BATCH_SIZE] for i in range(0, len(starts), WINDOW_BATCH_SIZE)):
            windows = [self._view(start, min(start + self.window, self._received)) for start in batch]
            levels = torch.stack([rms_dbfs(window) for window in windows])
            loud = [i for i, level in enumerate(levels.tolist()) if level >= SILENCE_DBFS]
            probabilities: list[torch.Tensor | None] = [None] * len(windows)
            if loud:
                lengths = torch.tensor([windows[i].numel() for i in loud])
                padded = torch.nn.utils.rnn.pad_sequence([windows[i] for i in loud], batch_first=True)
                scores = self.classifier.probabilities(self.classifier.log_mel(padded, lengths)).cpu()
                if not scores.isfinite().all():
                    raise NonFiniteScores
                for i, row in zip(loud, scores):
                    probabilities[i] = row
            for row in probabilities:
                self.tracker.push_window(row)
        # Keep only what later windows and segments still need.
        keep_from = min(self._next_window, self._next_segment)
        self._buffer = self._buffer[keep_from - self._buffer_start :]
        self._buffer_start = keep_from


@dataclass(frozen=True)
class Detection:
    """The events of one recording, with what they were found with."""

    events: tuple[Event, ...]
    duration_s: float
    labels: tuple[str, ...]
    thresholds: DetectionThresholds
    hop_s: float

    def counts(self) -> dict[str, int]:
        """Events per class, every class included."""
        return event_counts(self.events, self.labels)

    def rate_per_minute(self) -> dict[str, float]:
        return event_rates(self.counts(), self.duration_s)

    def to_dict(self) -> dict:
        """JSON-ready: duration, events, counts, rates per minute, and the thresholds and hop used."""
        return {
            **events_summary(self.events, self.labels, self.duration_s),
            "thresholds": self.thresholds.to_dict(),
            "hop_s": round(self.hop_s, 4),
        }


def detect_events(
    classifier,
    audio: str | Path | torch.Tensor,
    *,
    thresholds: DetectionThresholds | None = None,
    hop_s: float | None = None,
    name: str | None = None,
    max_duration_s: float | None = None,
) -> Detection:
    """The events of a file (decoded in chunks, ``stream_audio``) or of a mono waveform at the model's rate.

    ``classifier`` is an ``AudioClassifier``; ``thresholds`` default to the classifier's own.
    """
    thresholds = thresholds or classifier.detection_thresholds
    detector = StreamingDetector(classifier, thresholds, hop_s)
    if isinstance(audio, torch.Tensor):
        name = name or "waveform"
        check_finite(audio, classifier.sampling_rate, name)
        chunks = audio.float().reshape(-1).split(round(STREAM_CHUNK_S * classifier.sampling_rate))
    else:
        name = name or Path(audio).name
        chunks = stream_audio(audio, sampling_rate=classifier.sampling_rate, max_duration_s=max_duration_s)
    events = []
    try:
        for chunk in chunks:
            events += detector.push(chunk)
        events += detector.finish()
    except NonFiniteScores:
        raise AudioInputError(f"{name}: the model gave scores that are not finite numbers") from None
    detection = Detection(
        tuple(events), detector.duration_s, tuple(classifier.labels), thresholds, detector.hop_s
    )
    logger.info(
        "%s: %.1f s, %d event(s) (%s)",
        name,
        detection.duration_s,
        len(events),
        ", ".join(f"{count} {label}" for label, count in detection.counts().items() if count) or "none",
    )
    return detection
