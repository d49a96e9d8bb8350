"""Sound events (class, onset, offset, confidence) and the files they are written to and read from.

One definition for what ``detect`` finds and what a soundscape's truth holds, so that both are written, read
and scored alike. Formats: CSV (``EVENT_COLUMNS``), JSON (one object per recording with its events, counts
and rates) and Audacity's label track (tab-separated start, end, label: File > Import > Labels shows the
events over the waveform).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .fileio import write_text_atomically

# The columns of an event table, in the CSV, the JSON objects and the Space's table.
EVENT_COLUMNS: tuple[str, ...] = ("file", "label", "onset_s", "offset_s", "confidence")
# What ``vocalsound-hf detect --format`` writes.
EVENT_FORMATS: tuple[str, ...] = ("csv", "json", "audacity")
# Millisecond precision: finer than any hop a detector uses, and what Audacity's label files show.
_DECIMALS = 3


@dataclass(frozen=True)
class Event:
    """One sound event of a recording, times in seconds; ``confidence`` is ``None`` for a truth annotation."""

    label: str
    onset_s: float
    offset_s: float
    confidence: float | None = None

    def __post_init__(self):
        if not self.offset_s > self.onset_s >= 0:
            raise ValueError(f"an event needs 0 <= onset < offset, got {self.onset_s} to {self.offset_s} s")

    @property
    def duration_s(self) -> float:
        return self.offset_s - self.onset_s

    def to_dict(self) -> dict:
        row = asdict(self)
        for key in ("onset_s", "offset_s", "confidence"):
            if row[key] is not None:
                row[key] = round(row[key], _DECIMALS)
        return row


def event_counts(events: Iterable[Event], labels: Sequence[str]) -> dict[str, int]:
    """How many events of each of ``labels`` (zero included) there are."""
    counts = dict.fromkeys(labels, 0)
    for event in events:
        counts[event.label] = counts.get(event.label, 0) + 1
    return counts


def event_rates(counts: dict[str, int], duration_s: float) -> dict[str, float]:
    """Events per minute of each class over a recording of ``duration_s`` seconds."""
    minutes = duration_s / 60
    return {label: (count / minutes if minutes > 0 else 0.0) for label, count in counts.items()}


def events_summary(events: Sequence[Event], labels: Sequence[str], duration_s: float) -> dict:
    """A JSON-ready summary of one recording: duration, the events, per-class counts and rates per minute."""
    counts = event_counts(events, labels)
    return {
        "duration_s": round(duration_s, _DECIMALS),
        "events": [event.to_dict() for event in events],
        "counts": counts,
        "rate_per_minute": {
            label: round(rate, _DECIMALS) for label, rate in event_rates(counts, duration_s).items()
        },
    }


def events_to_csv(events_by_file: dict[str, Sequence[Event]]) -> str:
    """CSV text with a header (``EVENT_COLUMNS``) and one row per event, recordings in the given order."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EVENT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for file, events in events_by_file.items():
        for event in events:
            writer.writerow({"file": file, **event.to_dict()})
    return out.getvalue()


def events_to_audacity(events: Sequence[Event]) -> str:
    """Audacity label-track text of one recording: ``start<TAB>end<TAB>label`` per line."""
    return "".join(
        f"{event.onset_s:.{_DECIMALS}f}\t{event.offset_s:.{_DECIMALS}f}\t{event.label}\n" for event in events
    )


def events_from_csv(text: str) -> dict[str, list[Event]]:
    """The events of CSV text written by ``events_to_csv``, by file (an empty ``confidence`` is ``None``)."""
    by_file: dict[str, list[Event]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        confidence = row.get("confidence") or None
        by_file.setdefault(row["file"], []).append(
            Event(
                row["label"],
                float(row["onset_s"]),
                float(row["offset_s"]),
                None if confidence is None else float(confidence),
            )
        )
    return by_file


def events_from_audacity(text: str, source: str = "labels") -> list[Event]:
    """The events of an Audacity label track; ``ValueError`` naming ``source`` and the line for a bad one.

    Lines that start with a backslash carry the frequency range of a spectral label and are skipped.
    """
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("\\"):
            continue
        fields = line.split("\t")
        try:
            onset, offset = float(fields[0]), float(fields[1])
            label = fields[2]
            events.append(Event(label, onset, offset))
        except (IndexError, ValueError):
            raise ValueError(
                f"{source}: line {number} is not a label (expected start<TAB>end<TAB>label in seconds): {line!r}"
            ) from None
    return events


def write_events(path: str | Path, text: str) -> Path:
    """Write an events file atomically (a reader never sees half a table)."""
    write_text_atomically(path, text)
    return Path(path)


def events_to_json(summary_by_file: dict[str, dict]) -> str:
    """JSON lines: one strict JSON object per recording (``events_summary`` with its file name)."""
    return "".join(
        json.dumps({"file": file, **summary}, allow_nan=False) + "\n"
        for file, summary in summary_by_file.items()
    )
