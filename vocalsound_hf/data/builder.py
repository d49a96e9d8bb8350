"""VocalSound as a ``datasets`` builder: the release (downloaded, a zip or a folder) to train/validation/test.

``VocalSound`` finds the release (downloading the official zip and checking its sha256 when no
``data_dir`` is given), has ``reader.py`` turn its files into examples and ``audio_check.py`` check every
clip, and yields one example per clip with the speaker metadata as features. ``load_vocalsound`` builds it
(or reuses the cache) and returns the splits.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets.exceptions import NonMatchingChecksumError
from datasets.utils.extract import ExtractManager

from ..fileio import sha256_file
from ..release import (
    AGE_GROUPS,
    CITATION,
    CLASS_NAMES,
    CONFIGS,
    HOMEPAGE,
    LICENSE,
    RELEASE_SHA256,
    RELEASE_URLS,
    SPLIT_SOURCES,
    SPLITS,
    TARGET_SAMPLING_RATE,
)
from . import audio_check, reader

logger = logging.getLogger(__name__)

# How a zip (its first member's local header) begins.
_ZIP_MEMBER_SIGNATURE = b"PK\x03\x04"
# The code that decides the examples: a change to any of these files must not be served from the cache.
_EXAMPLE_CODE: tuple[Path, ...] = (Path(__file__), Path(reader.__file__), Path(audio_check.__file__))


class ChecksumError(NonMatchingChecksumError, ValueError):
    """A downloaded release whose sha256 is not the published one (also a ``ValueError`` for callers)."""


class CorruptArchiveError(ValueError):
    """A release zip that does not extract: a member's data, CRC or header is damaged."""


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
        # datasets would name the cache and the shards after this module (``builder``); they should say
        # what the data is.
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
        clips_by_split = reader.collect_clips(root, self.config.name, self.config.split_source)
        self.skipped = audio_check.check_audio(
            clips_by_split,
            root,
            config_name=self.config.name,
            sampling_rate=self.config.sampling_rate,
            split_source=self.config.split_source,
            skip_bad_audio=self.config.skip_bad_audio,
        )
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
            return _extract_release(dl_manager, archive, downloaded=True)
        data_dir = Path(self.config.data_dir)
        if data_dir.is_dir():
            return reader.unwrap(data_dir)
        if not data_dir.exists():
            raise FileNotFoundError(
                f"{data_dir} does not exist: expected a VocalSound release folder or its zip"
            )
        if not zipfile.is_zipfile(data_dir):
            with open(data_dir, "rb") as file:
                starts_as_zip = file.read(4) == _ZIP_MEMBER_SIGNATURE
            if starts_as_zip:
                # A zip's table of contents is at its end: a copy or download cut short loses it first.
                raise CorruptArchiveError(
                    f"{data_dir}: a zip without its table of contents at the end (a truncated copy or "
                    "download?); expected the complete release zip"
                )
            raise ValueError(
                f"{data_dir} is neither a folder nor a zip archive: expected a release folder or its zip"
            )
        return _extract_release(dl_manager, str(data_dir), downloaded=False)


def vocalsound_features(sampling_rate: int = TARGET_SAMPLING_RATE) -> datasets.Features:
    """The dataset's features; ``label`` follows the official class order."""
    return datasets.Features(
        {
            "audio": datasets.Audio(sampling_rate=sampling_rate),
            "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
            "speaker_id": datasets.Value("string"),
            "gender": datasets.ClassLabel(names=list(reader.GENDERS)),
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


def _fingerprint(data_dir: str | None) -> str:
    """A hash of the code that makes the examples and of the release's files (names, sizes, modification times)."""
    digest = hashlib.sha256()
    for code in _EXAMPLE_CODE:
        digest.update(code.read_bytes())
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
    actual = sha256_file(archive, progress=True)
    if actual == expected:
        return
    raise ChecksumError(
        f"{url}: sha256 {actual} does not match the published {expected} "
        f"(truncated or altered download){_drop_download(archive, dl_manager)}"
    )


def _drop_download(archive: str, dl_manager: datasets.DownloadManager) -> str:
    """Remove a bad download from the download cache; the clause saying so, or "" for a file outside it."""
    cache_dir = Path(
        dl_manager.download_config.cache_dir or datasets.config.DOWNLOADED_DATASETS_PATH
    ).resolve()
    if not Path(archive).resolve().is_relative_to(cache_dir):
        return ""
    # The download manager would hand this file out again on the next call: drop it and its metadata.
    for leftover in (archive, archive + ".json", archive + ".lock"):
        Path(leftover).unlink(missing_ok=True)
    return f"; the download was removed from the cache ({archive})"


def _extract_release(dl_manager: datasets.DownloadManager, archive: str, *, downloaded: bool) -> Path:
    """Extract a release zip into the datasets cache and return the release folder in it.

    A failed extraction (a damaged member, a full disk, an interrupt) leaves nothing in the cache: datasets
    would otherwise keep the members extracted so far, which a later load without ``force_extract`` serves
    as the release. A damaged zip is reported naming the member; a damaged download is also dropped from the
    download cache, so that the next run downloads it again.
    """
    logger.info("extracting %s into the datasets cache", archive)
    try:
        extracted = Path(dl_manager.extract(archive))
    except BaseException as err:
        _remove_extraction(dl_manager, archive)
        damage = reader.describe_zip_damage(Path(archive)) if isinstance(err, reader.ZIP_ERRORS) else None
        if damage is None:
            raise
        removed = _drop_download(archive, dl_manager) if downloaded else ""
        raise CorruptArchiveError(
            f"{archive}: {damage}; expected a complete, unaltered release zip (copy or download it again)"
            f"{removed}"
        ) from None
    if not extracted.is_dir():
        # datasets returns the path itself when it does not recognise the archive (e.g. a zip with data
        # prepended, which zipfile still accepts).
        raise CorruptArchiveError(
            f"{archive}: the datasets library does not recognise it as a zip archive; expected the release "
            "zip as published (or unzip it and pass the folder)"
        )
    return reader.unwrap(extracted)


def _remove_extraction(dl_manager: datasets.DownloadManager, archive: str) -> None:
    """Remove what datasets extracted of ``archive`` so far (it returns no path when extraction fails)."""
    manager = ExtractManager(cache_dir=dl_manager.download_config.cache_dir)
    # The folder datasets extracts into: a hash of the archive's path inside its extraction folder. Should
    # a datasets release change that, nothing is removed rather than the wrong thing.
    output_path = getattr(manager, "_get_output_path", None)
    if output_path is None:
        return
    target = Path(output_path(archive))
    if not target.resolve().is_relative_to(Path(manager.extract_dir).resolve()):
        return
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target, ignore_errors=True)
    elif target.exists() or target.is_symlink():
        target.unlink()
    else:
        return
    logger.info("removed the incomplete extraction %s from the datasets cache", target)
