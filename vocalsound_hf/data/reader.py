"""The release read as plain files: its layout, the meta files, the datafiles, and the examples they give.

What the ``datasets`` library cannot know about the release is written here by hand: its layout (possibly
inside one wrapper folder, the 44.1 kHz audio folder of unconfirmed name), the meta CSVs without a header
row, and the datafiles whose ``wav`` paths point at the authors' cluster. Nothing here imports ``datasets``:
the builder (``builder.py``) turns the examples into a dataset.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from ..release import AUDIO_DIRS, CLASS_MIDS, CLASS_NAMES, SPLIT_FILES, SPLITS, age_group, parse_file_name

logger = logging.getLogger(__name__)

GENDERS: tuple[str, ...] = ("female", "male", "other")
META_COLUMNS: tuple[str, ...] = ("spk_id", "gender", "age", "country", "native language", "health condition")
# Where a field of the meta files lands in the dataset.
_META_FIELDS: tuple[str, ...] = (
    "speaker_id",
    "gender",
    "age",
    "country",
    "native_language",
    "health_condition",
)
_MISSING_VALUES = frozenset({"", "na", "n/a", "nan", "none", "null", "unknown", "-"})
# Audio folders are per config, but the 44.1 kHz folder name is unconfirmed (release.AUDIO_DIRS): for
# that config only, a single other ``audio*`` folder is taken instead.
_AUDIO_DIR_PREFIX = "audio"
_UNCONFIRMED_AUDIO_DIRS = frozenset({"44k"})

EXPECTED_LAYOUT = """expected the official release layout:
  audio_16k/ (or audio_44k/)   {speaker}_{collection}_{class}.wav files
  datafiles/tr.json val.json te.json
  meta/tr_meta.csv val_meta.csv te_meta.csv   (or *_meta.json)"""


# --- layout ----------------------------------------------------------------------------------------------


def unwrap(root: Path) -> Path:
    """The release folder itself, also when a hand-made zip put it inside one wrapper folder."""
    if (root / "datafiles").is_dir() or (root / "meta").is_dir():
        return root
    children = [child for child in root.iterdir() if child.is_dir() and child.name != "__MACOSX"]
    if len(children) == 1 and ((children[0] / "datafiles").is_dir() or (children[0] / "meta").is_dir()):
        return children[0]
    return root


def find_audio_dir(root: Path, config: str) -> Path:
    """The audio folder of ``config``; a missing one is named along with what is there instead."""
    expected = root / AUDIO_DIRS[config]
    if expected.is_dir():
        return expected
    candidates = sorted(
        child
        for child in root.iterdir()
        if child.is_dir()
        and child.name.startswith(_AUDIO_DIR_PREFIX)
        and child.name not in AUDIO_DIRS.values()
    )
    if config in _UNCONFIRMED_AUDIO_DIRS and len(candidates) == 1:
        logger.info("audio folder %s/ used for config %s (no %s/)", candidates[0].name, config, expected.name)
        return candidates[0]
    others = [name for other, name in AUDIO_DIRS.items() if other != config and (root / name).is_dir()]
    raise FileNotFoundError(
        f"no audio folder {expected} for config {config!r}"
        + (f" (candidates: {', '.join(c.name for c in candidates)})" if candidates else "")
        + "".join(f" ({name}/ is there: is this the {name[len('audio_') :]} release?)" for name in others)
        + f"; {EXPECTED_LAYOUT}"
    )


def list_wavs(audio_dir: Path) -> dict[str, Path]:
    """Clip file name -> path; macOS AppleDouble ``._*`` files are metadata, not audio."""
    return {
        entry.name: Path(entry.path)
        for entry in os.scandir(audio_dir)
        if entry.name.endswith(".wav") and not entry.name.startswith("._") and entry.is_file()
    }


# What reading a damaged zip raises: a bad header or CRC, invalid deflate data, data cut short, a compression
# method or encryption zipfile cannot read.
ZIP_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    RuntimeError,
)


def describe_zip_damage(archive: Path) -> str | None:
    """What makes ``archive`` unreadable (naming the first bad member), or ``None`` if every member reads back.

    Each member is decompressed in full and checked against its CRC-32, in the order extraction takes them,
    so the member named is the one an extraction stopped at.
    """
    try:
        with zipfile.ZipFile(archive) as zip_file:
            for info in zip_file.infolist():
                if info.is_dir():
                    continue
                try:
                    with zip_file.open(info) as member:
                        while member.read(1 << 20):
                            pass
                except ZIP_ERRORS as err:
                    return f"member {info.filename} is damaged ({err})"
    except zipfile.BadZipFile as err:
        return f"its table of contents is damaged ({err})"
    return None


# --- meta files ------------------------------------------------------------------------------------------


def _missing_value(text: str) -> bool:
    return text.strip().lower() in _MISSING_VALUES


def _parse_meta_row(row: list[str], where: str) -> dict[str, Any]:
    if len(row) != len(META_COLUMNS):
        raise ValueError(
            f"{where}: {len(row)} columns, expected {len(META_COLUMNS)}: {', '.join(META_COLUMNS)}"
        )
    values = [cell.strip() for cell in row]
    speaker, gender, age, *text = values
    if not speaker:
        raise ValueError(f"{where}: empty spk_id")
    if _missing_value(gender):
        gender_value = None
    elif gender.lower() in GENDERS:
        gender_value = gender.lower()
    else:
        raise ValueError(
            f"{where}: gender {gender!r}, expected one of {', '.join(GENDERS)} (any case) or empty"
        )
    if _missing_value(age):
        age_value = None
    else:
        try:
            age_value = int(float(age)) if float(age).is_integer() else None
        except ValueError:
            age_value = None
        if age_value is None:
            raise ValueError(f"{where}: age {age!r}, expected an integer number of years or empty")
    return dict(
        zip(
            _META_FIELDS,
            [speaker, gender_value, age_value, *(None if _missing_value(t) else t for t in text)],
        )
    )


def read_meta(path: Path) -> dict[str, dict[str, Any]]:
    """Speaker id -> metadata of one meta file (CSV with or without a header row, or JSON)."""
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        records = data.get("data", data) if isinstance(data, dict) else data
        rows = [list(r.values()) if isinstance(r, dict) else r for r in records]
        places = [f"{path}: entry {i}" for i in range(len(rows))]
    else:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = [row for row in csv.reader(file) if any(cell.strip() for cell in row)]
        places = [f"{path}: row {i + 1}" for i in range(len(rows))]
        if rows and rows[0][0].strip().lower() in {"spk_id", "speaker_id", "speaker", "id"}:
            rows, places = rows[1:], places[1:]
    meta: dict[str, dict[str, Any]] = {}
    for row, where in zip(rows, places):
        if not isinstance(row, list):
            raise ValueError(
                f"{where}: expected a row of {len(META_COLUMNS)} values: {', '.join(META_COLUMNS)}"
            )
        record = _parse_meta_row([str(cell) for cell in row], where)
        if record["speaker_id"] in meta:
            raise ValueError(f"{where}: speaker {record['speaker_id']} is listed twice")
        meta[record["speaker_id"]] = record
    return meta


def meta_file(root: Path, split: str) -> Path:
    """The meta file of a split: ``meta/<stem>_meta.csv``, or ``.json``."""
    stem = f"{SPLIT_FILES[split]}_meta"
    for suffix in (".csv", ".json"):
        if (root / "meta" / f"{stem}{suffix}").is_file():
            return root / "meta" / f"{stem}{suffix}"
    raise FileNotFoundError(f"missing {root / 'meta' / stem}.csv (or .json); {EXPECTED_LAYOUT}")


# --- datafiles and examples ------------------------------------------------------------------------------


def read_datafile(path: Path) -> list[tuple[str, int]]:
    """(clip file name, label) of each entry of an official datafile, in its order."""
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}; {EXPECTED_LAYOUT}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["data"]
        pairs = [(entry["wav"], entry["labels"]) for entry in entries]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(
            f'{path}: expected {{"data": [{{"wav": ..., "labels": <class mid>}}, ...]}} ({err!r})'
        ) from None
    clips, problems, seen = [], [], set()
    for i, (wav, mid) in enumerate(pairs):
        # The shipped paths point at the authors' cluster: only the file name identifies the clip.
        name = PurePosixPath(str(wav).replace("\\", "/")).name
        try:
            clip = parse_file_name(name)
        except ValueError as err:
            problems.append(f"entry {i}: {err}")
            continue
        if mid not in CLASS_MIDS:
            problems.append(
                f"entry {i} ({name}): labels {mid!r}, expected one class mid of {', '.join(CLASS_MIDS)}"
            )
        elif CLASS_MIDS.index(mid) != clip.label:
            problems.append(
                f"entry {i} ({name}): labels {mid} is {CLASS_NAMES[CLASS_MIDS.index(mid)]}, "
                f"but the file name says {CLASS_NAMES[clip.label]}"
            )
        elif name in seen:
            problems.append(f"entry {i} ({name}): listed twice")
        else:
            seen.add(name)
            clips.append((name, clip.label))
    if problems:
        raise ValueError(f"{path}: {len(problems)} bad entries:\n  " + "\n  ".join(problems))
    return clips


def _names_by_speaker_split(
    wavs: dict[str, Path], meta_by_split: dict[str, dict[str, Any]], audio_dir: Path
) -> dict[str, list[tuple[str, int]]]:
    """(clip file name, label) per split for every wav, by the meta file that lists its speaker."""
    split_of_speaker = {speaker: split for split, meta in meta_by_split.items() for speaker in meta}
    names_by_split: dict[str, list[tuple[str, int]]] = {split: [] for split in SPLITS}
    bad_names, unassigned = [], []
    for name in sorted(wavs):
        try:
            clip = parse_file_name(name)
        except ValueError as err:
            bad_names.append(str(err))
            continue
        if clip.speaker_id in split_of_speaker:
            names_by_split[split_of_speaker[clip.speaker_id]].append((name, clip.label))
        else:
            unassigned.append(name)
    if bad_names:
        raise ValueError(
            f"{audio_dir}: {len(bad_names)} wav files are not clips:\n  " + "\n  ".join(bad_names)
        )
    if unassigned:
        logger.warning(
            "%d clips belong to no split (their speakers are in no meta file) and are left out: %s",
            len(unassigned),
            ", ".join(unassigned),
        )
    return names_by_split


def collect_clips(root: Path, config: str, split_source: str) -> dict[str, list[dict[str, Any]]]:
    """The examples of each split, metadata included, with ``audio`` the clip's path (not yet checked)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; {EXPECTED_LAYOUT}")
    audio_dir = find_audio_dir(root, config)
    wavs = list_wavs(audio_dir)
    meta_by_split = {split: read_meta(meta_file(root, split)) for split in SPLITS}
    speaker_meta: dict[str, dict[str, Any]] = {}
    for split, meta in meta_by_split.items():
        for speaker, record in meta.items():
            if speaker in speaker_meta:
                raise ValueError(f"speaker {speaker} is in the meta files of two splits (one is {split})")
            speaker_meta[speaker] = record
    if split_source == "datafiles":
        names_by_split = {
            split: read_datafile(root / "datafiles" / f"{SPLIT_FILES[split]}.json") for split in SPLITS
        }
    else:
        names_by_split = _names_by_speaker_split(wavs, meta_by_split, audio_dir)

    clips_by_split: dict[str, list[dict[str, Any]]] = {}
    without_meta: set[str] = set()
    for split, names in names_by_split.items():
        clips = []
        for name, label in names:
            clip = parse_file_name(name)
            meta = speaker_meta.get(clip.speaker_id)
            if meta is None:
                without_meta.add(clip.speaker_id)
                meta = dict.fromkeys(_META_FIELDS)
            path = wavs.get(name)
            clips.append(
                {
                    "audio": str(path) if path is not None else str(audio_dir / name),
                    "label": label,
                    **meta,
                    "speaker_id": clip.speaker_id,
                    "age_group": age_group(meta["age"]),
                    "collection": clip.collection,
                    "file_name": name,
                }
            )
        clips_by_split[split] = clips
    if without_meta:
        logger.warning(
            "%d speakers have no row in meta/ and get None metadata: %s",
            len(without_meta),
            ", ".join(sorted(without_meta)),
        )
    return clips_by_split
