"""The Space's Live tab: the microphone streamed to a ``StreamingDetector``, running counts and recent events.

Memory per session is bounded, however long a tab stays open: the detector holds about a window of audio
and a few undecided segments (``vocalsound_hf.inference.detection``), the resampler a few samples, and the
page's events a ``deque`` of ``MAX_LIVE_EVENTS``; only the per-class counts (six integers) cover the whole
recording.
"""

from __future__ import annotations

import math
import threading
from collections import deque

import numpy as np
import soxr
import torch

from vocalsound_hf.events import Event, event_rates
from vocalsound_hf.inference.classifier import AudioClassifier
from vocalsound_hf.inference.detection import StreamingDetector

# How far past a segment the detector looks for its background level before deciding it. The library's
# default (15 s, as ``detect`` uses on files) would show an event 15 s after it happened; 2 s of background
# after it is enough to tell a burst from a steady floor, and the event shows within a few seconds (the
# lookahead plus one window, which the last window covering it needs).
LIVE_LOOKAHEAD_S = 2.0
# Recent events the page keeps (the table and the timeline); older ones only stay in the counts.
MAX_LIVE_EVENTS = 200
# The running timeline shows this much of the latest audio.
LIVE_TIMELINE_S = 120.0


def to_mono(data: np.ndarray) -> torch.Tensor:
    """A microphone chunk (``[samples]`` or ``[samples, channels]``; int16 as Gradio gives it, or float) as a
    float32 mono waveform in [-1, 1].

    The live path cannot go through the file decoder (``vocalsound_hf.audio``), so it mixes as FFmpeg does
    there: FFmpeg's mono of stereo is ``(left + right) / sqrt(2)``, not the mean, so a stereo microphone gives
    the model the same level as its recording uploaded as a file. Other channel counts (rare for a
    microphone) are summed and scaled by ``1 / sqrt(channels)`` alike. Integer samples are scaled by their
    full scale: ``1 / 32768`` for int16 (8-bit unsigned ones are centred first).
    """
    array = np.asarray(data)
    if np.issubdtype(array.dtype, np.unsignedinteger):  # 8-bit WAV: offset binary
        half = (np.iinfo(array.dtype).max + 1) / 2
        samples = torch.from_numpy((array.astype(np.float32) - half) / half)
    elif np.issubdtype(array.dtype, np.integer):
        samples = torch.from_numpy(array.astype(np.float32) / -np.iinfo(array.dtype).min)
    else:
        samples = torch.from_numpy(array.astype(np.float32, copy=False))
    if samples.ndim == 1:
        return samples
    if samples.shape[1] == 1:
        return samples[:, 0]
    return samples.sum(dim=1) / math.sqrt(samples.shape[1])


class LiveSession:
    """One browser session's live detection: the detector, the running counts and the recent events.

    Gradio runs the stream, the stop and the reset handlers of one session in different threads, so each
    method holds the session's lock; they change the session in place, so a handler that returns it never
    undoes another's reset.
    """

    def __init__(
        self,
        classifier: AudioClassifier,
        lookahead_s: float = LIVE_LOOKAHEAD_S,
        max_events: int = MAX_LIVE_EVENTS,
    ):
        self.classifier = classifier
        self.lookahead_s = lookahead_s
        self.max_events = max_events
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Start again: a fresh detector, no counts, no events."""
        with self._lock:
            self.detector = StreamingDetector(
                self.classifier, self.classifier.detection_thresholds, lookahead_s=self.lookahead_s
            )
            # Microphones give 44.1 or 48 kHz in chunks: soxr's stream resampler carries its filter state from
            # chunk to chunk (resampling each chunk alone would click at every edge). It is not FFmpeg's
            # resampler (the file decoder's); the two differ by their filters, not in level or timing.
            self.resampler: soxr.ResampleStream | None = None
            self.resampler_rate: int | None = None
            self.counts = dict.fromkeys(self.classifier.labels, 0)
            self.recent: deque[Event] = deque(maxlen=self.max_events)
            self.finished = False
            # Audio heard when the page last drew the timeline (``live_tab``).
            self.drawn_at_s = 0.0

    @property
    def duration_s(self) -> float:
        return self.detector.duration_s

    def push(self, sample_rate: int, data: np.ndarray) -> list[Event]:
        """Add a microphone chunk; the events it completed. Chunks after ``finish`` are ignored."""
        with self._lock:
            if self.finished:
                return []
            mono = to_mono(data)
            if sample_rate != self.classifier.sampling_rate:
                if self.resampler is None or self.resampler_rate != sample_rate:
                    self.resampler_rate = sample_rate
                    self.resampler = soxr.ResampleStream(
                        sample_rate, self.classifier.sampling_rate, 1, dtype="float32", quality="HQ"
                    )
                mono = torch.from_numpy(self.resampler.resample_chunk(mono.numpy()))
            samples = mono
            return self._record(self.detector.push(samples) if samples.numel() else [])

    def finish(self) -> list[Event]:
        """The recording stopped: decide what is left (the last events, without the lookahead)."""
        with self._lock:
            if self.finished:
                return []
            self.finished = True
            return self._record(self.detector.finish())

    def _record(self, events: list[Event]) -> list[Event]:
        for event in events:
            self.counts[event.label] = self.counts.get(event.label, 0) + 1
            self.recent.append(event)
        return events

    def rates(self) -> dict[str, float]:
        return event_rates(self.counts, self.duration_s)

    def newest_first(self) -> list[Event]:
        return list(reversed(self.recent))

    def timeline(self, span_s: float = LIVE_TIMELINE_S) -> tuple[list[Event], float, float]:
        """The recent events that end within the last ``span_s`` seconds, and that span's start and end."""
        end_s = max(self.duration_s, span_s)
        start_s = end_s - span_s
        return [event for event in self.recent if event.offset_s > start_s], start_s, end_s


def status_markdown(session: LiveSession) -> str:
    minutes, seconds = divmod(int(session.duration_s), 60)
    counted = ", ".join(f"{count} {label}" for label, count in session.counts.items() if count)
    state = "Stopped" if session.finished else "Listening"
    return f"**{state}** · {minutes}:{seconds:02d} heard · **events {sum(session.counts.values())}**" + (
        f" ({counted})" if counted else ""
    )
