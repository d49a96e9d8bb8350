"""VocalSound as a ``datasets`` builder, and the fbank normalisation stats of its training split.

``VocalSound`` reads the official release (downloaded through the download manager, a local zip, or an
unzipped folder) and yields one example per clip with the speaker metadata as features. What the
``datasets`` library cannot know about the release is written here by hand: its layout, the headerless
meta CSVs, the datafiles whose ``wav`` paths point at the authors' cluster, and its unreadable clips.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import datasets
from datasets.exceptions import NonMatchingChecksumError
from datasets.utils import tqdm as hf_tqdm

from .release import (
    AGE_GROUPS,
    AUDIO_DIRS,
    CITATION,
    CLASS_MIDS,
    CLASS_NAMES,
    CONFIGS,
    HOMEPAGE,
    LICENSE,
    RELEASE_SHA256,
    RELEASE_URLS,
    SPLIT_FILES,
    SPLITS,
    TARGET_SAMPLING_RATE,
    age_group,
    parse_file_name,
)

logger = logging.getLogger(__name__)

GENDERS: tuple[str, ...] = ("female", "male", "other")
SPLIT_SOURCES: tuple[str, ...] = ("datafiles", "speakers")
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
NORM_STATS_KEY = "norm_stats"

EXPECTED_LAYOUT = """expected the official release layout:
  audio_16k/ (or audio_44k/)   {speaker}_{collection}_{class}.wav files
  datafiles/tr.json val.json te.json
  meta/tr_meta.csv val_meta.csv te_meta.csv   (or *_meta.json)"""


class ChecksumError(NonMatchingChecksumError, ValueError):
    """A downloaded release whose sha256 is not the published one (also a ``ValueError`` for callers)."""


@dataclass
class VocalSoundConfig(datasets.BuilderConfig):
    """One release (16 kHz or 44.1 kHz) and how to split and filter it.

    Attributes:
        sampling_rate: the release's sampling rate, which is also the ``Audio`` feature's.
        split_source: ``"datafiles"`` for the official split files (the paper's sets) or ``"speakers"``
            for every wav of the speakers listed in each split's meta file.
        skip_bad_audio: skip clips that are missing, empty or undecodable (reported) instead of failing.
    """

    sampling_rate: int = TARGET_SAMPLING_RATE
    split_source: str = "datafiles"
    skip_bad_audio: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.split_source not in SPLIT_SOURCES:
            raise ValueError(f"split_source must be one of {SPLIT_SOURCES}, got {self.split_source!r}")


class VocalSound(datasets.GeneratorBasedBuilder):
    """The VocalSound dataset (Gong, Yu, Glass, ICASSP 2022) with speaker metadata and the official splits.

    Pass ``data_dir`` (an unzipped release folder or the release zip) or nothing to download the
    official zip; extra config keywords: ``split_source`` and ``skip_bad_audio``.
    """

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = VocalSoundConfig
    BUILDER_CONFIGS = [
        VocalSoundConfig(
            name=name,
            version=datasets.Version("1.0.0"),
            sampling_rate=rate,
            description=f"The {rate / 1000:g} kHz release.",
        )
        for name, rate in CONFIGS.items()
    ]
    DEFAULT_CONFIG_NAME = "16k"

    def __init__(self, *args, **kwargs):
        # The module is named ``data``; the cache and shard names should say what the data is.
        kwargs.setdefault("dataset_name", "vocalsound")
        if kwargs.get("data_dir") is not None:
            kwargs["data_dir"] = os.path.abspath(os.fspath(kwargs["data_dir"]))
        if kwargs.get("hash") is None:
            # datasets keys the cache by config, not by the release's content: without this, a release
            # rebuilt in place (or a new version of this builder) would be served from a stale cache.
            kwargs["hash"] = _fingerprint(kwargs.get("data_dir"))
        super().__init__(*args, **kwargs)
        # Filled by _split_generators: clip file names skipped as unreadable, per split, with the reason.
        self.skipped: dict[str, list[tuple[str, str]]] = {}

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="Non-speech human vocal sounds (laughter, sighs, coughs, throat clearing, sneezes, "
            "sniffs) from 3,365 speakers, with the speakers' gender, age, country, native language and "
            "health condition.",
            features=vocalsound_features(self.config.sampling_rate),
            homepage=HOMEPAGE,
            license=LICENSE,
            citation=CITATION,
        )

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        # The Audio feature imports torch and torchcodec on its first example. Importing them here, in the
        # parent, lets num_proc workers inherit them: each worker importing torch itself cost ~70 s on a
        # busy 2-core machine.
        import torchcodec.encoders  # noqa: F401

        root = self._release_root(dl_manager)
        clips_by_split = _collect_clips(root, self.config.name, self.config.split_source)
        self.skipped = _check_audio(clips_by_split, self.config, root)
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"clips": clips_by_split[split]})
            for split in SPLITS
        ]

    def _generate_examples(self, clips: list[dict[str, Any]]):
        for clip in clips:
            yield clip["file_name"], clip

    def _release_root(self, dl_manager: datasets.DownloadManager) -> Path:
        """The folder holding the release: the data_dir, or where its zip (given or downloaded) is extracted."""
        name = self.config.name
        # datasets reuses any non-empty extraction folder, keyed by the zip's path: one left half-written
        # by an interrupted run, or a local zip rewritten in place, would be served stale. This runs only
        # when the dataset itself is (re)built, so extract afresh then.
        dl_manager.download_config.force_extract = True
        if self.config.data_dir is None:
            url = RELEASE_URLS[name]
            archive = dl_manager.download(url)
            _verify_sha256(archive, RELEASE_SHA256[name], url, dl_manager)
            logger.info("extracting %s into the datasets cache", archive)
            return _unwrap(Path(dl_manager.extract(archive)))
        data_dir = Path(self.config.data_dir)
        if data_dir.is_dir():
            return _unwrap(data_dir)
        if not data_dir.exists():
            raise FileNotFoundError(
                f"{data_dir} does not exist: expected a VocalSound release folder or its zip"
            )
        if not zipfile.is_zipfile(data_dir):
            raise ValueError(
                f"{data_dir} is neither a folder nor a zip archive: expected a release folder or its zip"
            )
        logger.info("extracting %s into the datasets cache", data_dir)
        return _unwrap(Path(dl_manager.extract(str(data_dir))))


def vocalsound_features(sampling_rate: int = TARGET_SAMPLING_RATE) -> datasets.Features:
    """The dataset's features; ``label`` follows the official class order."""
    return datasets.Features(
        {
            "audio": datasets.Audio(sampling_rate=sampling_rate),
            "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
            "speaker_id": datasets.Value("string"),
            "gender": datasets.ClassLabel(names=list(GENDERS)),
            "age": datasets.Value("int32"),
            "age_group": datasets.ClassLabel(names=[name for name, _, _ in AGE_GROUPS]),
            "country": datasets.Value("string"),
            "native_language": datasets.Value("string"),
            "health_condition": datasets.Value("string"),
            "collection": datasets.Value("int32"),
            "file_name": datasets.Value("string"),
        }
    )


def load_vocalsound(
    data_dir: str | os.PathLike | None = None,
    config: str = "16k",
    split_source: str = "datafiles",
    skip_bad_audio: bool = False,
    **kwargs,
) -> datasets.DatasetDict:
    """Build (or reuse from the cache) VocalSound and return its ``train``/``validation``/``test`` splits.

    Args:
        data_dir: an unzipped release folder or the release zip; ``None`` downloads the official zip and
            checks its sha256.
        config: ``"16k"`` or ``"44k"``.
        split_source: ``"datafiles"`` (the official split files, the paper's sets) or ``"speakers"``
            (every wav, split by its speaker's meta file).
        skip_bad_audio: skip missing, empty or undecodable clips with a report instead of failing.
        **kwargs: ``cache_dir``, ``num_proc``, ``download_mode``, ``verification_mode``, ``download_config``,
            ``max_shard_size``, ``writer_batch_size``, ``storage_options``, ``keep_in_memory``.
    """
    if config not in CONFIGS:
        raise ValueError(f"config must be one of {sorted(CONFIGS)}, got {config!r}")
    prepare_kwargs = {
        key: kwargs.pop(key)
        for key in ("num_proc", "download_mode", "verification_mode", "download_config", "max_shard_size")
        if key in kwargs
    }
    in_memory = kwargs.pop("keep_in_memory", False)
    builder = VocalSound(
        config_name=config,
        data_dir=None if data_dir is None else os.fspath(data_dir),
        split_source=split_source,
        skip_bad_audio=skip_bad_audio,
        **kwargs,
    )
    builder.download_and_prepare(**prepare_kwargs)
    return builder.as_dataset(in_memory=in_memory)


# --- reading the release -------------------------------------------------------------------------------


def _fingerprint(data_dir: str | None) -> str:
    """A hash of this builder's code and of the release's files (names, sizes, modification times)."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    if data_dir is not None:
        path = Path(data_dir)
        if path.is_file():
            stat = path.stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        elif path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                for name in sorted(filenames):
                    stat = os.stat(os.path.join(dirpath, name))
                    digest.update(f"{dirpath}/{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def _verify_sha256(
    archive: str, expected: str | None, url: str, dl_manager: datasets.DownloadManager
) -> None:
    """Raise if the downloaded archive is not the published file, removing it from the download cache."""
    if expected is None:
        logger.warning("no published sha256 for %s: the download is used unchecked", url)
        return
    digest = hashlib.sha256()
    size = os.path.getsize(archive)
    with (
        open(archive, "rb") as file,
        hf_tqdm(total=size, unit="B", unit_scale=True, desc="Verifying sha256") as bar,
    ):
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            bar.update(len(chunk))
    if digest.hexdigest() == expected:
        return
    cache_dir = Path(
        dl_manager.download_config.cache_dir or datasets.config.DOWNLOADED_DATASETS_PATH
    ).resolve()
    removed = ""
    if Path(archive).resolve().is_relative_to(cache_dir):
        # The download manager would hand this file out again on the next call: drop it and its metadata.
        for leftover in (archive, archive + ".json", archive + ".lock"):
            Path(leftover).unlink(missing_ok=True)
        removed = f"; the download was removed from the cache ({archive})"
    raise ChecksumError(
        f"{url}: sha256 {digest.hexdigest()} does not match the published {expected} "
        f"(truncated or altered download){removed}"
    )


def _unwrap(root: Path) -> Path:
    """The release folder itself, also when a hand-made zip put it inside one wrapper folder."""
    if (root / "datafiles").is_dir() or (root / "meta").is_dir():
        return root
    children = [child for child in root.iterdir() if child.is_dir() and child.name != "__MACOSX"]
    if len(children) == 1 and ((children[0] / "datafiles").is_dir() or (children[0] / "meta").is_dir()):
        return children[0]
    return root


def _find_audio_dir(root: Path, config: str) -> Path:
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


def _list_wavs(audio_dir: Path) -> dict[str, Path]:
    """Clip file name -> path; macOS AppleDouble ``._*`` files are metadata, not audio."""
    return {
        entry.name: Path(entry.path)
        for entry in os.scandir(audio_dir)
        if entry.name.endswith(".wav") and not entry.name.startswith("._") and entry.is_file()
    }


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


def _read_meta(path: Path) -> dict[str, dict[str, Any]]:
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


def _meta_file(root: Path, split: str) -> Path:
    stem = f"{SPLIT_FILES[split]}_meta"
    for suffix in (".csv", ".json"):
        if (root / "meta" / f"{stem}{suffix}").is_file():
            return root / "meta" / f"{stem}{suffix}"
    raise FileNotFoundError(f"missing {root / 'meta' / stem}.csv (or .json); {EXPECTED_LAYOUT}")


def _read_datafile(path: Path) -> list[tuple[str, int]]:
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


def _collect_clips(root: Path, config: str, split_source: str) -> dict[str, list[dict[str, Any]]]:
    """The examples of each split, metadata included, with ``audio`` the clip's path (not yet checked)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; {EXPECTED_LAYOUT}")
    audio_dir = _find_audio_dir(root, config)
    wavs = _list_wavs(audio_dir)
    meta_by_split = {split: _read_meta(_meta_file(root, split)) for split in SPLITS}
    speaker_meta: dict[str, dict[str, Any]] = {}
    for split, meta in meta_by_split.items():
        for speaker, record in meta.items():
            if speaker in speaker_meta:
                raise ValueError(f"speaker {speaker} is in the meta files of two splits (one is {split})")
            speaker_meta[speaker] = record

    if split_source == "datafiles":
        names_by_split = {
            split: _read_datafile(root / "datafiles" / f"{SPLIT_FILES[split]}.json") for split in SPLITS
        }
    else:
        split_of_speaker = {speaker: split for split, meta in meta_by_split.items() for speaker in meta}
        names_by_split = {split: [] for split in SPLITS}
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


def _audio_problem(path: str | os.PathLike) -> tuple[str | None, int | None]:
    """Why a clip cannot be used (``"missing"``, ``"empty ..."``, ``"undecodable ..."``) or None, and its rate.

    Only the header is read (libsndfile), which is enough to reject what the real release holds:
    0-byte files, random bytes and truncated headers; a header announcing 0 frames counts as empty.
    """
    import soundfile

    path = Path(path)
    if not path.is_file():
        return "missing", None
    if path.stat().st_size == 0:
        return "empty (0 bytes)", None
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as err:
        # libsndfile's message repeats the path ("Error opening '<path>': <reason>"); keep the reason.
        return f"undecodable ({str(err).strip().rsplit(': ', 1)[-1]})", None
    if info.frames == 0:
        return "empty (0 frames)", info.samplerate
    return None, info.samplerate


def _check_audio(
    clips_by_split: dict[str, list[dict[str, Any]]], config: VocalSoundConfig, root: Path
) -> dict[str, list[tuple[str, str]]]:
    """Check every clip's header; fail listing all bad clips, or drop them (``skip_bad_audio``) with a report."""
    bad: dict[str, list[tuple[str, str]]] = {split: [] for split in clips_by_split}
    other_rates: Counter[int] = Counter()
    total = sum(len(clips) for clips in clips_by_split.values())
    with hf_tqdm(total=total, unit=" clips", desc="Checking audio headers") as bar:
        for split, clips in clips_by_split.items():
            for clip in clips:
                problem, rate = _audio_problem(clip["audio"])
                if problem is not None:
                    bad[split].append((clip["file_name"], problem))
                elif rate != config.sampling_rate:
                    other_rates[rate] += 1
                bar.update(1)
    if other_rates:
        # Still usable: the Audio feature resamples them on decoding; but the release is not what it claims.
        logger.warning(
            "%d clips of %s are not at the %s config's %d Hz (%s); they are resampled when decoded",
            sum(other_rates.values()),
            root,
            config.name,
            config.sampling_rate,
            ", ".join(f"{count} at {rate} Hz" for rate, count in sorted(other_rates.items())),
        )
    all_bad = [(split, name, why) for split, items in bad.items() for name, why in items]
    if not all_bad:
        return bad
    source = "datafiles/" if config.split_source == "datafiles" else "the speakers' meta files"
    listing = [f"{split}: {name}: {why}" for split, name, why in all_bad]
    if not config.skip_bad_audio:
        raise ValueError(
            f"{len(all_bad)} clips of {root} assigned by {source} cannot be used:\n  "
            + "\n  ".join(listing)
            + "\nPass skip_bad_audio=True (CLI: --skip-bad-audio) to skip them with a report."
        )
    reasons = Counter(why.split(" ")[0] for _, _, why in all_bad)
    for split in clips_by_split:
        dropped = {name for name, _ in bad[split]}
        clips_by_split[split] = [clip for clip in clips_by_split[split] if clip["file_name"] not in dropped]
    logger.warning(
        "skipped %d unreadable clips (%s; %s): %s",
        len(all_bad),
        ", ".join(f"{split} {len(items)}" for split, items in bad.items() if items),
        ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items())),
        "; ".join(listing),
    )
    return bad


# --- normalisation stats -------------------------------------------------------------------------------


# Clips per batch_fbank call in compute_norm_stats: big enough to batch, small enough to stay in cache.
_FBANK_CHUNK = 32


def compute_norm_stats(
    split: datasets.Dataset | datasets.IterableDataset,
    batch_size: int = 1000,
    max_length: int = 512,
    num_mel_bins: int = 128,
) -> tuple[float, float]:
    """Fbank mean and std of a split, computed the way the original AST's ``get_norm_stats.py`` does.

    Each clip is resampled to 16 kHz (by the ``Audio`` feature), turned into a 128-bin Kaldi fbank
    (25 ms Hann window, 10 ms shift, dither 0; :func:`vocalsound_hf.features.batch_fbank`) and zero-padded
    or cut to ``max_length`` frames (the original also removes the waveform mean, which Kaldi's per-frame
    DC removal makes a no-op); the result is the mean of the per-batch means and the mean of the per-batch (unbiased)
    stds over batches of ``batch_size`` clips, the last one possibly smaller, as the original's loader.
    Unlike the original, no SpecAugment or mixup is applied: the stats describe the features the model
    actually normalises, and they are deterministic.
    """
    import numpy as np

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    split = split.select_columns(["audio"]).cast_column(
        "audio", datasets.Audio(sampling_rate=TARGET_SAMPLING_RATE)
    )
    try:
        total = len(split)
    except TypeError:  # an IterableDataset knows its size only from its info, if at all
        total = next(
            (s.num_examples for name, s in (split.info.splits or {}).items() if name == split.split), None
        )

    means, stds = _batch_stats(split, total, batch_size, max_length, num_mel_bins)
    if not means:
        raise ValueError("cannot compute norm stats of an empty split")
    mean, std = float(np.mean(means)), float(np.mean(stds))
    logger.info(
        "fbank stats over %d batches of up to %d clips: mean %.7f, std %.7f",
        len(means),
        batch_size,
        mean,
        std,
    )
    return mean, std


def _batch_stats(
    split: datasets.Dataset | datasets.IterableDataset,
    total: int | None,
    batch_size: int,
    max_length: int,
    num_mel_bins: int,
) -> tuple[list[float], list[float]]:
    """The mean and unbiased std of each batch of padded fbanks."""
    import numpy as np
    import torch

    from .features import batch_fbank

    means: list[float] = []
    stds: list[float] = []
    # Sums in float64 give the batch mean and std without holding the batch (1000 x 512 x 128 floats).
    count, total_sum, total_sq = 0, 0.0, 0.0
    # Clips are decoded one by one but turned into fbanks a chunk at a time (the project's one fbank path).
    chunk: list[torch.Tensor] = []

    def add_chunk() -> None:
        nonlocal total_sum, total_sq
        # The zero padding up to max_length adds nothing to the sums but counts in n, as in the original.
        fbank = batch_fbank(chunk, num_mel_bins=num_mel_bins, max_length=max_length, normalize=False)
        fbank = fbank.to(torch.float64)
        total_sum += float(fbank.sum())
        total_sq += float((fbank * fbank).sum())
        chunk.clear()

    def close_batch() -> None:
        n = count * max_length * num_mel_bins
        mean = total_sum / n
        means.append(mean)
        stds.append(float(np.sqrt(max(total_sq - n * mean * mean, 0.0) / (n - 1))))

    for row in hf_tqdm(split, total=total, unit=" clips", desc="Computing fbank stats"):
        chunk.append(row["audio"].get_all_samples().data.to(torch.float32).mean(dim=0))
        count += 1
        if len(chunk) == _FBANK_CHUNK or count == batch_size:
            add_chunk()
        if count == batch_size:
            close_batch()
            count, total_sum, total_sq = 0, 0.0, 0.0
    if chunk:
        add_chunk()
    if count:
        close_batch()
    return means, stds


def _is_exported_dataset(path: Path) -> bool:
    return path.is_dir() and (path / "README.md").is_file() and not (path / "datafiles").exists()


def norm_stats_of_release(
    data_dir: str | os.PathLike, config: str = "16k", batch_size: int = 1000
) -> tuple[float, float]:
    """Fbank mean and std of the training split of a release (folder or zip) or of an exported dataset folder."""
    path = Path(data_dir)
    if _is_exported_dataset(path):
        train = datasets.load_dataset(str(path), config, split="train", streaming=True)
    else:
        train = load_vocalsound(path, config=config)["train"]
    return compute_norm_stats(train, batch_size=batch_size)


def read_norm_stats(
    dataset_name_or_dir: str | os.PathLike, config: str | None = None
) -> tuple[float, float] | None:
    """The fbank ``(mean, std)`` an export wrote into the dataset card, or None if the card has none.

    Args:
        dataset_name_or_dir: an exported dataset folder, or a Hub dataset id (read through huggingface_hub).
        config: whose stats to read; default: the card's default config (or its only one).
    """
    from huggingface_hub import DatasetCard
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    path = Path(dataset_name_or_dir)
    if path.is_dir():
        if not (path / "README.md").is_file():
            return None
        card = DatasetCard.load(path / "README.md")
    else:
        try:
            card = DatasetCard.load(str(dataset_name_or_dir), repo_type="dataset")
        except LocalEntryNotFoundError:
            logger.warning(
                "no norm stats: the card of %s is not cached and the Hub is offline", dataset_name_or_dir
            )
            return None
        except EntryNotFoundError:
            return None
    entries = card.data.to_dict().get(NORM_STATS_KEY) or []
    if config is None:
        defaults = [c["config_name"] for c in card.data.to_dict().get("configs") or [] if c.get("default")]
        config = defaults[0] if defaults else (entries[0]["config_name"] if len(entries) == 1 else "16k")
    for entry in entries:
        if entry.get("config_name") == config:
            return float(entry["mean"]), float(entry["std"])
    return None
