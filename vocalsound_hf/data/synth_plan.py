"""The plan of a synthetic release: its speakers (metadata and split) and its clips (which are broken, and how).

Drawn from the seed alone, before any audio exists, so that the layout writer (``synth_release.py``) and
the sound synthesis (``synth_sounds.py``) agree on every clip. The shares follow the real release.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..release import AGE_GROUPS, CLASS_TOKENS

# About 300 speakers give ~2,000 clips, ~1,500 of them in train: enough for a small AST trained from
# scratch on CPU to go well past the accuracy it reaches on a few hundred clips.
DEFAULT_NUM_SPEAKERS = 300
# Fewest speakers that still leave every split every class, and test both genders and all age groups.
MIN_NUM_SPEAKERS = 12
# Speaker ids are a letter and four digits, unique across letters.
MAX_NUM_SPEAKERS = 9999

# Shares of the speakers per split, as in the real release (15,570 / 1,860 / 3,594 clips).
_SPLIT_SHARES = {"validation": 0.09, "test": 0.17}
_SECOND_COLLECTION_SHARE = 0.15
_OTHER_GENDER_SHARE = 0.02
_OUT_OF_RANGE_AGE_SHARE = 0.03
# Share of the clips that are undecodable: ten times the real release's 34 of 21,024, so that even a
# small copy has several; and the valid clips that the datafiles leave out as well.
_BAD_CLIP_SHARE = 0.015
_NUM_OMITTED_VALID = 2
# One speaker whose whole collection is broken (as m0600_0_* in the real release), from this size on.
_BROKEN_COLLECTION_MIN_SPEAKERS = 50

# The gender letter of a speaker id and how the meta files write it.
GENDER_NAMES = {"f": "Female", "m": "Male", "o": "Other"}
# (country, native language) pairs; one country name holds a comma on purpose, so quoting is exercised.
_ORIGINS = (
    ("United States", "English"),
    ("United States", "Spanish"),
    ("China", "Mandarin"),
    ("China", "Cantonese"),
    ("India", "Hindi"),
    ("India", "Tamil"),
    ("United Kingdom", "English"),
    ("Canada", "French"),
    ("Germany", "German"),
    ("Brazil", "Portuguese"),
    ("Nigeria", "Yoruba"),
    ("Philippines", "Tagalog"),
    ("Korea, Republic of", "Korean"),
    ("Mexico", "Spanish"),
    ("Russia", "Russian"),
)
_HEALTH_PROBLEMS = ("cold", "asthma", "allergy", "sore throat, cough", "smoker")
_HEALTH_PROBLEM_SHARE = 0.08
# Speakers per paper age group 18-25 / 26-48 / 49-80, roughly as in the real test split (892 / 2,351 / 348).
_AGE_GROUP_WEIGHTS = (0.3, 0.6, 0.1)
_OUT_OF_RANGE_AGES = (16, 17, 81, 83, 85)

# How an undecodable clip is broken (see synth_release._clip_bytes).
BAD_KINDS = ("empty", "garbage", "truncated", "header_cut")


@dataclass(frozen=True)
class Speaker:
    speaker_id: str
    gender: str
    age: int
    country: str
    native_language: str
    health: str
    split: str
    num_collections: int

    @property
    def number(self) -> int:
        return int(self.speaker_id[1:])

    def meta_row(self) -> list[str]:
        return [
            self.speaker_id,
            GENDER_NAMES[self.gender],
            str(self.age),
            self.country,
            self.native_language,
            self.health,
        ]


@dataclass(frozen=True)
class Clip:
    speaker: Speaker
    collection: int
    label: int
    # "ok", "omitted" (valid but left out of the datafiles) or one of BAD_KINDS.
    fate: str = "ok"

    @property
    def file_name(self) -> str:
        return f"{self.speaker.speaker_id}_{self.collection}_{CLASS_TOKENS[self.label]}.wav"


def plan_speakers(num_speakers: int, seed: int) -> list[Speaker]:
    """Speakers with their metadata and split, sorted by id; test is the first block before sorting."""
    rng = np.random.default_rng([seed, 1])
    num_test = max(4, round(num_speakers * _SPLIT_SHARES["test"]))
    num_val = max(2, round(num_speakers * _SPLIT_SHARES["validation"]))
    splits = ["test"] * num_test + ["validation"] * num_val + ["train"] * (num_speakers - num_test - num_val)

    genders = rng.choice(["f", "m"], size=num_speakers)
    num_other = max(1, round(num_speakers * _OTHER_GENDER_SHARE))
    groups = rng.choice(len(AGE_GROUPS), size=num_speakers, p=_AGE_GROUP_WEIGHTS)
    out_of_range = np.zeros(num_speakers, dtype=bool)
    # Test must hold a female, a male and every age group, whatever the draw: its first three speakers
    # are set to cover them. The rare kinds (gender "o", ages outside 18-80) go to random later speakers.
    genders[:3] = ["f", "m", rng.choice(["f", "m"])]
    groups[:3] = [0, 1, 2]
    rare = rng.permutation(np.arange(3, num_speakers))
    genders[rare[:num_other]] = "o"
    num_out_of_range = max(1, round(num_speakers * _OUT_OF_RANGE_AGE_SHARE))
    out_of_range[rare[num_other : num_other + num_out_of_range]] = True

    numbers = rng.choice(np.arange(1, MAX_NUM_SPEAKERS + 1), size=num_speakers, replace=False)
    second = rng.random(num_speakers) < _SECOND_COLLECTION_SHARE
    second[rng.integers(num_speakers)] = True  # at least one speaker recorded twice, even when tiny
    speakers = []
    for i in range(num_speakers):
        if out_of_range[i]:
            age = int(rng.choice(_OUT_OF_RANGE_AGES))
        else:
            _, low, high = AGE_GROUPS[groups[i]]
            age = int(rng.integers(low, high + 1))
        country, language = _ORIGINS[rng.integers(len(_ORIGINS))]
        health = str(rng.choice(_HEALTH_PROBLEMS)) if rng.random() < _HEALTH_PROBLEM_SHARE else "no"
        speakers.append(
            Speaker(
                speaker_id=f"{genders[i]}{numbers[i]:04d}",
                gender=str(genders[i]),
                age=age,
                country=country,
                native_language=language,
                health=health,
                split=splits[i],
                num_collections=2 if second[i] else 1,
            )
        )
    return sorted(speakers, key=lambda s: s.speaker_id)


def plan_clips(speakers: list[Speaker], seed: int) -> list[Clip]:
    """One clip per class and collection of every speaker, with the broken and unlisted ones marked."""
    rng = np.random.default_rng([seed, 2])
    clips = [
        Clip(speaker, collection, label)
        for speaker in speakers
        for collection in range(speaker.num_collections)
        for label in range(len(CLASS_TOKENS))
    ]
    listed = Counter((clip.speaker.split, clip.label) for clip in clips)
    fates: dict[int, str] = {}

    def take(index: int, fate: str) -> bool:
        # Every split keeps every class in its datafiles.
        key = (clips[index].speaker.split, clips[index].label)
        if index in fates or listed[key] <= 1:
            return False
        listed[key] -= 1
        fates[index] = fate
        return True

    num_bad = max(len(BAD_KINDS), round(len(clips) * _BAD_CLIP_SHARE))
    if len(speakers) >= _BROKEN_COLLECTION_MIN_SPEAKERS:
        train = [i for i, clip in enumerate(clips) if clip.speaker.split == "train" and clip.collection == 0]
        first = train[rng.integers(len(train)) // len(CLASS_TOKENS) * len(CLASS_TOKENS)]
        for offset in range(len(CLASS_TOKENS)):
            take(first + offset, BAD_KINDS[len(fates) % len(BAD_KINDS)])
    for index in rng.permutation(len(clips)):
        if len(fates) >= num_bad:
            break
        take(int(index), BAD_KINDS[len(fates) % len(BAD_KINDS)])
    num_omitted = 0
    for index in rng.permutation(len(clips)):
        if num_omitted == _NUM_OMITTED_VALID:
            break
        num_omitted += take(int(index), "omitted")
    return [
        Clip(clip.speaker, clip.collection, clip.label, fates.get(i, "ok")) for i, clip in enumerate(clips)
    ]
