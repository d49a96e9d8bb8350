"""``vocalsound-hf detect``: the sound events of recordings, as a CSV table, JSON lines or Audacity labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..audio import AudioInputError
from ..events import (
    EVENT_FORMATS,
    events_to_audacity,
    events_to_csv,
    events_to_json,
    write_events,
)
from .classifier import AudioClassifier
from .detection import Detection, DetectionThresholds
from .predict import audio_files


def detect_files(
    model: str | Path,
    recordings: Sequence[str | Path],
    *,
    output_format: str = "csv",
    out: str | Path | None = None,
    thresholds_file: str | Path | None = None,
    hop_s: float | None = None,
    fast: bool = False,
    recursive: bool = False,
) -> dict[str, Detection]:
    """Detect the events of each recording and write them (the ``vocalsound-hf detect`` command).

    ``output_format``: ``csv`` (one table, ``events.EVENT_COLUMNS``), ``json`` (one object per recording with
    its events, per-class counts and rates per minute) or ``audacity`` (a label track per recording). The
    result goes to ``out`` (a file; for ``audacity`` a folder of ``<recording>.txt``) or to stdout
    (``audacity``: one recording only). Directories stand for their audio files (``predict.audio_files``).
    A recording that cannot be read does not stop the others; their errors are raised together at the end
    as one ``ValueError``, after the others' results are written.
    """
    if output_format not in EVENT_FORMATS:
        raise ValueError(f"--format must be one of {', '.join(EVENT_FORMATS)}, got {output_format!r}")
    recordings = audio_files(recordings, recursive=recursive)
    label_files = _label_files(recordings, out) if output_format == "audacity" else {}
    thresholds = None if thresholds_file is None else DetectionThresholds.load(thresholds_file)
    classifier = AudioClassifier.from_pretrained(model, fast=fast)
    detections, errors = {}, []
    for recording in recordings:
        try:
            detections[str(recording)] = classifier.detect(recording, thresholds=thresholds, hop_s=hop_s)
        except (AudioInputError, FileNotFoundError) as err:
            errors.append(str(err))
    _write(detections, output_format, out, label_files)
    if errors:
        raise ValueError(
            f"{len(errors)} of {len(recordings)} recording(s) could not be read: " + "; ".join(errors)
        )
    return detections


def _label_files(recordings: Sequence[str | Path], out: str | Path | None) -> dict[str, Path | None]:
    """Where each recording's Audacity labels go; checked before any model is loaded."""
    if out is None:
        if len(recordings) > 1:
            raise ValueError(
                "--format audacity writes one label file per recording: give a folder with --out"
            )
        return {str(recordings[0]): None}
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder}: expected a folder for the Audacity label files, found a file")
    targets: dict[str, Path | None] = {}
    for recording in recordings:
        target = folder / f"{Path(recording).stem}.txt"
        if target in targets.values():
            raise ValueError(f"two recordings would both write {target}: detect them separately")
        targets[str(recording)] = target
    return targets


def _write(
    detections: dict[str, Detection], output_format: str, out: str | Path | None, label_files: dict
) -> None:
    if output_format == "audacity":
        for recording, detection in detections.items():
            text = events_to_audacity(detection.events)
            target = label_files[recording]
            if target is None:
                print(text, end="", flush=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                write_events(target, text)
        return
    if output_format == "csv":
        text = events_to_csv({recording: detection.events for recording, detection in detections.items()})
    else:
        text = events_to_json({recording: detection.to_dict() for recording, detection in detections.items()})
    if out is None:
        print(text, end="", flush=True)
    else:
        write_events(out, text)
