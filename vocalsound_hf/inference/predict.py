"""``vocalsound-hf predict``: classify audio files and print one result per file, as text or JSON lines."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..audio import AudioInputError
from ..models.presets import AUDIOSET_AST, MODEL_VARIABLE
from .classifier import AudioClassifier
from .windows import Prediction

# Files of a directory that ``predict`` classifies: the containers and codecs the decoder reads.
AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".webm", ".aiff", ".aif", ".wma"}
)


def default_model() -> str:
    """``$VOCALSOUND_MODEL``, else the public AudioSet AST, which classifies the six classes zero-shot."""
    return os.environ.get(MODEL_VARIABLE) or AUDIOSET_AST


def split_model_argument(arguments: Sequence[str]) -> tuple[str, list[str]]:
    """``(model, audio)`` of ``predict [MODEL] AUDIO...``: the first argument is the model unless it is audio.

    It is audio when it is an existing file with an audio suffix (``AUDIO_SUFFIXES``) or an existing
    directory that is not a saved model (no ``config.json``); the model is then ``default_model()``.
    """
    first = Path(arguments[0])
    is_audio = (first.is_file() and first.suffix.lower() in AUDIO_SUFFIXES) or (
        first.is_dir() and not (first / "config.json").is_file()
    )
    if is_audio:
        return default_model(), list(arguments)
    if len(arguments) == 1:
        raise ValueError(f"{arguments[0]} is a model, not audio: give the audio files to classify after it")
    return arguments[0], list(arguments[1:])


def audio_files(paths: Sequence[str | Path], recursive: bool = False) -> list[str | Path]:
    """``paths`` with each directory replaced by the audio files in it (``AUDIO_SUFFIXES``), sorted.

    ``recursive`` also takes the files of its subdirectories. Hidden files and folders (such as macOS's
    ``._name.wav`` metadata) are skipped. Files are kept as given, checked when they are classified. Raises
    ``ValueError`` for a directory without audio files, before any model is loaded.
    """
    found = []
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            found.append(given)
            continue
        candidates = path.rglob("*") if recursive else path.iterdir()
        inside = sorted(
            file
            for file in candidates
            if file.suffix.lower() in AUDIO_SUFFIXES
            and file.is_file()
            and not any(part.startswith(".") for part in file.relative_to(path).parts)
        )
        if not inside:
            if recursive:
                where = "in it or its subdirectories"
            elif any(entry.is_dir() for entry in path.iterdir()):
                where = "at its top level (--recursive also searches its subdirectories)"
            else:
                where = "in it"
            raise ValueError(
                f"{path} is a directory with no audio files {where}; audio files end in "
                + ", ".join(sorted(AUDIO_SUFFIXES))
            )
        found += inside
    return found


def predict_files(
    model: str | Path,
    audio_paths: Sequence[str | Path],
    top_k: int = 3,
    as_json: bool = False,
    fast: bool = False,
    recursive: bool = False,
) -> list[Prediction]:
    """Classify files and print the results (the ``vocalsound-hf predict`` command).

    A directory stands for the audio files in it, sorted (``audio_files``; with ``recursive``, those of its
    subdirectories too). Prints one line per file (``path<TAB>label score ...``, followed by one indented
    line per window for long recordings), or with ``as_json`` one strict JSON object per line. A file that
    cannot be classified (unreadable, silent, a NaN or infinite sample, ...) does not stop the others; the
    errors are raised together at the end as one ``ValueError``, whose message names each file.
    """
    if top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {top_k}")
    audio_paths = audio_files(audio_paths, recursive=recursive)
    classifier = AudioClassifier.from_pretrained(model, fast=fast)
    predictions, errors = [], []
    for path in audio_paths:
        try:
            prediction = classifier.classify(path)
        except (AudioInputError, FileNotFoundError) as err:
            errors.append(str(err))
            continue
        predictions.append(prediction)
        if as_json:
            # Strict JSON: bare NaN or Infinity is not JSON. The classifier never returns them, and if it did,
            # this raises (one error line from the CLI) instead of printing what a strict parser rejects.
            print(json.dumps({"file": str(path), **prediction.to_dict(top_k)}, allow_nan=False), flush=True)
        else:
            _print_prediction(path, prediction, top_k)
    if errors:
        raise ValueError(
            f"{len(errors)} of {len(audio_paths)} file(s) could not be classified: " + "; ".join(errors)
        )
    return predictions


def _print_prediction(path: str | Path, prediction: Prediction, top_k: int) -> None:
    """``path<TAB>label score ...``, then for a long recording one indented line per window."""
    print(
        f"{path}\t" + "  ".join(f"{label} {score:.3f}" for label, score in prediction.top(top_k)),
        flush=True,
    )
    if len(prediction.windows) > 1:
        for window in prediction.windows:
            found = (
                "silent"
                if window.label is None
                else f"{window.label} {window.probabilities[window.label]:.3f}"
            )
            print(f"  {window.start_s:.2f}-{window.end_s:.2f} s\t{found}")
