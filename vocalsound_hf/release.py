"""Facts about the official VocalSound release that every other module relies on.

Source: ../shared/vocalsound_release.md (the authors' repository YuanGongND/vocalsound and code that
opened the real zip). Nothing here imports torch, so ``import vocalsound_hf`` stays light.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Official order of class_labels_indices_vs.csv; the label ids of every model and dataset follow it.
CLASS_NAMES: tuple[str, ...] = ("Laughter", "Sigh", "Cough", "Throat clearing", "Sneeze", "Sniff")
CLASS_MIDS: tuple[str, ...] = (
    "/m/01j3sz",
    "/m/07plz5l",
    "/m/01b_21",
    "/m/0dl9sf8",
    "/m/01hsr_",
    "/m/07ppn3j",
)
# The class token of the file names, e.g. f0003_0_throatclearing.wav.
CLASS_TOKENS: tuple[str, ...] = ("laughter", "sigh", "cough", "throatclearing", "sneeze", "sniff")
# Rows of the 527-way AudioSet head (../shared/reference/audioset) holding the six classes.
AUDIOSET_INDICES: tuple[int, ...] = (16, 26, 47, 48, 49, 50)

LABEL_CSV_NAME = "class_labels_indices_vs.csv"
LABEL_CSV = "index,mid,display_name\n" + "".join(
    f'{i},{mid},"{name}"\n' for i, (mid, name) in enumerate(zip(CLASS_MIDS, CLASS_NAMES))
)

CONFIGS: dict[str, int] = {"16k": 16_000, "44k": 44_100}
# Audio folder per config. The 44.1 kHz folder name is not confirmed anywhere, so readers detect it.
AUDIO_DIRS: dict[str, str] = {"16k": "audio_16k", "44k": "audio_44k"}
RELEASE_URLS: dict[str, str] = {
    "16k": "https://www.dropbox.com/s/c5ace70qh1vbyzb/vs_release_16k.zip?dl=1",
    "44k": "https://www.dropbox.com/s/ybgaprezl8ubcce/vs_release_44k.zip?dl=1",
}
# Only the 16 kHz checksum has been observed; the 44.1 kHz download is taken as it comes.
RELEASE_SHA256: dict[str, str | None] = {
    "16k": "66b83ee62e79c059b051c6f4afac06497945931c10c7f643a928b92f1ff9b9f2",
    "44k": None,
}
HOMEPAGE = "https://github.com/YuanGongND/vocalsound"
LICENSE = "cc-by-sa-4.0"

SPLITS: tuple[str, ...] = ("train", "validation", "test")
# The held-out splits that soundscapes for measuring detection are built from (never train).
SOUNDSCAPE_SPLITS: tuple[str, ...] = ("validation", "test")
# How clips are assigned to splits: the official datafiles (the paper's sets), or every wav by its speaker's
# meta file.
SPLIT_SOURCES: tuple[str, ...] = ("datafiles", "speakers")
# Official file stem of each split in datafiles/ and meta/.
SPLIT_FILES: dict[str, str] = {"train": "tr", "validation": "val", "test": "te"}
# datafiles/subtest/ files and the metadata filter each one corresponds to.
SUBTEST_FILES: dict[str, str] = {
    "te_age1.json": "age_group=18-25",
    "te_age2.json": "age_group=26-48",
    "te_age3.json": "age_group=49-80",
    "te_female.json": "gender=female",
    "te_male.json": "gender=male",
}

# The paper's age groups (inclusive bounds); ages outside them have no group.
AGE_GROUPS: tuple[tuple[str, int, int], ...] = (("18-25", 18, 25), ("26-48", 26, 48), ("49-80", 49, 80))

# The paper's feature normalisation (x + 3.05) / 5.42, written in AST's (x - mean) / (2 * std) form.
PAPER_NORM_MEAN = -3.05
PAPER_NORM_STD = 2.71
TARGET_SAMPLING_RATE = 16_000


CITATION = """@inproceedings{gong_vocalsound,
  title={Vocalsound: A Dataset for Improving Human Vocal Sounds Recognition},
  author={Gong, Yuan and Yu, Jin and Glass, James},
  booktitle={ICASSP 2022-2022 IEEE International Conference on Acoustics, Speech and Signal Processing (ICASSP)},
  pages={151--155},
  year={2022},
  organization={IEEE}
}"""

_FILE_NAME = re.compile(r"^(?P<speaker>[a-z]\d+)_(?P<collection>\d+)_(?P<token>[a-z]+)\.wav$")


@dataclass(frozen=True)
class ClipName:
    """A clip's identity, parsed from ``{speaker}_{collection}_{class}.wav``."""

    speaker_id: str
    collection: int
    label: int


def parse_file_name(file_name: str) -> ClipName:
    """Parse a release file name such as ``m0573_1_sigh.wav``; raise ``ValueError`` naming it if it is not one."""
    match = _FILE_NAME.match(file_name)
    if match is None or match["token"] not in CLASS_TOKENS:
        raise ValueError(
            f"{file_name!r} is not a VocalSound clip name: expected '{{speaker}}_{{collection}}_{{class}}.wav' "
            f"with class one of {', '.join(CLASS_TOKENS)}"
        )
    return ClipName(match["speaker"], int(match["collection"]), CLASS_TOKENS.index(match["token"]))


def age_group(age: int | None) -> str | None:
    """The paper's age group of an age, or ``None`` outside 18-80 (or when the age is unknown)."""
    if age is None:
        return None
    for name, low, high in AGE_GROUPS:
        if low <= age <= high:
            return name
    return None
