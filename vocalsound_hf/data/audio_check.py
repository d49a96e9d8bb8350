"""The check of every clip before the dataset is built, and the report of what ``skip_bad_audio`` skips.

The real release holds unreadable clips (0-byte files, random bytes, truncated headers), and a float WAV
can hold NaN or infinite samples, which make every feature of the clip NaN. A build fails listing all bad
clips at once, or drops them with one report, instead of failing on the first one mid-way.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from datasets.utils import tqdm as hf_tqdm

logger = logging.getLogger(__name__)

# soundfile subtypes that store samples as floats, so can hold NaN and infinity.
FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})


def audio_problem(path: str | os.PathLike) -> tuple[str | None, int | None]:
    """Why a clip cannot be used (``"missing"``, ``"empty ..."``, ``"undecodable ..."``, ``"non-finite ..."``) or
    None, and its rate.

    The header (libsndfile) is enough to reject what the real release holds: 0-byte files, random bytes and
    truncated headers; a header announcing 0 frames counts as empty. Integer PCM cannot hold NaN or infinity,
    so only float files have their samples read, for the first sample that is not a finite number.
    """
    path = Path(path)
    if not path.is_file():
        return "missing", None
    if path.stat().st_size == 0:
        return "empty (0 bytes)", None
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as err:
        return f"undecodable ({_reason(err)})", None
    if info.frames == 0:
        return "empty (0 frames)", info.samplerate
    if info.subtype in FLOAT_SUBTYPES:
        return _non_finite(path, info), info.samplerate
    return None, info.samplerate


def _reason(err: Exception) -> str:
    # libsndfile's message repeats the path ("Error opening '<path>': <reason>"); keep the reason.
    return str(err).strip().rsplit(": ", 1)[-1]


def _non_finite(path: Path, info) -> str | None:
    """``"non-finite (sample I at T s is inf)"`` for the first NaN or infinite frame of a float file, else None."""
    try:
        # float64 holds float32 and float64 samples exactly, NaN and infinity included.
        samples, _ = soundfile.read(str(path), dtype="float64", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        return f"undecodable ({_reason(err)})"
    bad = np.flatnonzero(~np.isfinite(samples).all(axis=1))
    if not len(bad):
        return None
    frame = int(bad[0])
    value = next(v for v in samples[frame] if not np.isfinite(v))
    return f"non-finite (sample {frame} at {frame / info.samplerate:.3f} s is {value})"


def check_audio(
    clips_by_split: dict[str, list[dict[str, Any]]],
    root: Path,
    *,
    config_name: str,
    sampling_rate: int,
    split_source: str,
    skip_bad_audio: bool,
) -> dict[str, list[tuple[str, str]]]:
    """Check every clip (``audio_problem``); fail listing all bad clips, or drop them (``skip_bad_audio``) with a
    report.

    Returns the skipped clips per split as (file name, reason); ``clips_by_split`` is filtered in place.
    """
    bad: dict[str, list[tuple[str, str]]] = {split: [] for split in clips_by_split}
    other_rates: Counter[int] = Counter()
    total = sum(len(clips) for clips in clips_by_split.values())
    with hf_tqdm(total=total, unit=" clips", desc="Checking audio") as bar:
        for split, clips in clips_by_split.items():
            for clip in clips:
                problem, rate = audio_problem(clip["audio"])
                if problem is not None:
                    bad[split].append((clip["file_name"], problem))
                elif rate != sampling_rate:
                    other_rates[rate] += 1
                bar.update(1)
    if other_rates:
        # Still usable: the Audio feature resamples them on decoding; but the release is not what it claims.
        logger.warning(
            "%d clips of %s are not at the %s config's %d Hz (%s); they are resampled when decoded",
            sum(other_rates.values()),
            root,
            config_name,
            sampling_rate,
            ", ".join(f"{count} at {rate} Hz" for rate, count in sorted(other_rates.items())),
        )
    all_bad = [(split, name, why) for split, items in bad.items() for name, why in items]
    if not all_bad:
        return bad
    source = "datafiles/" if split_source == "datafiles" else "the speakers' meta files"
    listing = [f"{split}: {name}: {why}" for split, name, why in all_bad]
    if not skip_bad_audio:
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
