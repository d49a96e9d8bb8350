"""The VocalSound builder on synthetic releases: splits, labels, metadata, bad input, download, norm stats.

Expected values are read from the release files here with the standard library (json, csv,
soundfile), independently of the builder's own parsing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import shutil
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import soundfile as sf

from vocalsound_hf.release import CLASS_TOKENS, SPLIT_FILES, SPLITS, SUBTEST_FILES

SMALL_SPEAKERS = 12


def _ground_truth(root: Path) -> dict:
    """Datafile clip names per split and meta rows per speaker, straight from the files."""
    datafiles = {
        split: [
            PurePosixPath(entry["wav"]).name
            for entry in json.loads((root / "datafiles" / f"{stem}.json").read_text())["data"]
        ]
        for split, stem in SPLIT_FILES.items()
    }
    meta, speakers_of_split = {}, {}
    for split, stem in SPLIT_FILES.items():
        with open(root / "meta" / f"{stem}_meta.csv", newline="") as file:
            rows = list(csv.reader(file))
        speakers_of_split[split] = {row[0] for row in rows}
        meta.update({row[0]: row for row in rows})
    audio_dir = next(p for p in root.iterdir() if p.is_dir() and p.name.startswith("audio"))
    return {"datafiles": datafiles, "meta": meta, "speakers": speakers_of_split, "audio_dir": audio_dir}


def _expected_age_group(age: int) -> str | None:
    return (
        "18-25" if 18 <= age <= 25 else "26-48" if 26 <= age <= 48 else "49-80" if 49 <= age <= 80 else None
    )


def _readable(path: Path) -> bool:
    try:
        return len(sf.read(path)[0]) > 0
    except Exception:
        return False


def _rows(split):
    """The split's rows without audio, with class labels as names."""
    features = split.features
    rows = split.remove_columns("audio").to_list()
    for row in rows:
        for name in ("label", "gender", "age_group"):
            if row[name] is not None:
                row[name] = features[name].int2str(row[name])
    return rows


@pytest.fixture(scope="module")
def release_16k_zip(tmp_path_factory):
    from conftest import TEST_SPEAKERS

    from vocalsound_hf.data.synth_release import make_synthetic_release

    out = tmp_path_factory.mktemp("zip16k") / "vs_release_16k"
    return make_synthetic_release(out, num_speakers=TEST_SPEAKERS, seed=0, as_zip=True)


@pytest.fixture(scope="module")
def release_44k(tmp_path_factory):
    from vocalsound_hf.data.synth_release import make_synthetic_release

    out = tmp_path_factory.mktemp("rel44k") / "vs_release_44k"
    return make_synthetic_release(out, sampling_rate=44100, num_speakers=SMALL_SPEAKERS, seed=1)


@pytest.fixture(scope="module")
def release_44k_zip(tmp_path_factory):
    from vocalsound_hf.data.synth_release import make_synthetic_release

    out = tmp_path_factory.mktemp("zip44k") / "vs_release_44k"
    return make_synthetic_release(out, sampling_rate=44100, num_speakers=SMALL_SPEAKERS, seed=1, as_zip=True)


@pytest.fixture(params=["16k-folder", "16k-zip", "44k-folder", "44k-zip"])
def source(request):
    """(data_dir, config, folder with the same content) for each kind of release."""
    config, kind = request.param.split("-")
    folder = request.getfixturevalue("synth_release" if config == "16k" else "release_44k")
    if kind == "folder":
        return folder, config, folder
    return request.getfixturevalue(f"release_{config}_zip"), config, folder


@pytest.fixture
def release_copy(synth_release, tmp_path):
    """A writable copy of the 16 kHz release, for the bad-input cases."""
    return Path(shutil.copytree(synth_release, tmp_path / "vs_release_16k"))


def test_splits_labels_and_metadata_follow_the_release_files(source):
    from vocalsound_hf import load_vocalsound

    data_dir, config, folder = source
    truth = _ground_truth(folder)
    dataset = load_vocalsound(data_dir, config=config)

    assert list(dataset) == list(SPLITS)
    assert dataset["train"].features["audio"].sampling_rate == {"16k": 16000, "44k": 44100}[config]
    for split in SPLITS:
        rows = _rows(dataset[split])
        assert [row["file_name"] for row in rows] == truth["datafiles"][split]
        for row in rows:
            speaker, collection, token = row["file_name"][: -len(".wav")].split("_")
            meta = truth["meta"][speaker]
            assert CLASS_TOKENS.index(token) == dataset[split].features["label"].str2int(row["label"])
            assert row["speaker_id"] == speaker and row["collection"] == int(collection)
            assert row["gender"] == meta[1].lower()
            assert row["age"] == int(meta[2])
            assert row["age_group"] == _expected_age_group(int(meta[2]))
            assert [row["country"], row["native_language"], row["health_condition"]] == meta[3:6]
            assert speaker in truth["speakers"][split]

    # Decoded audio is the source file's samples.
    first = dataset["test"][0]
    expected, rate = sf.read(truth["audio_dir"] / first["file_name"], dtype="float32", always_2d=True)
    samples = first["audio"].get_all_samples()
    assert samples.sample_rate == rate
    np.testing.assert_allclose(samples.data.numpy(), expected.T, atol=1e-6)


def test_paper_test_subsets_are_metadata_filters(source):
    from vocalsound_hf import load_vocalsound

    data_dir, config, folder = source
    test = load_vocalsound(data_dir, config=config)["test"]
    rows = _rows(test)
    for file_name, condition in SUBTEST_FILES.items():
        field, value = condition.split("=")
        listed = [
            PurePosixPath(e["wav"]).name
            for e in json.loads((folder / "datafiles/subtest" / file_name).read_text())["data"]
        ]
        selected = [row["file_name"] for row in rows if row[field] == value]
        assert selected and sorted(selected) == sorted(listed), file_name


def test_speakers_mode_lists_every_bad_clip_and_skips_them_on_request(synth_release, caplog):
    from vocalsound_hf import load_vocalsound

    truth = _ground_truth(synth_release)
    wavs = sorted(p.name for p in truth["audio_dir"].glob("*.wav") if not p.name.startswith("._"))
    listed = {name for names in truth["datafiles"].values() for name in names}
    bad = sorted(name for name in wavs if name not in listed and not _readable(truth["audio_dir"] / name))
    assert len(bad) >= 3 and len(set(wavs) - listed) > len(bad)  # bad clips and valid unlisted clips

    with pytest.raises(ValueError, match="skip_bad_audio") as error:
        load_vocalsound(synth_release, split_source="speakers")
    assert all(name in str(error.value) for name in bad)

    with caplog.at_level(logging.WARNING, logger="vocalsound_hf.data"):
        dataset = load_vocalsound(synth_release, split_source="speakers", skip_bad_audio=True)
    for split in SPLITS:
        expected = sorted(n for n in wavs if n.split("_")[0] in truth["speakers"][split] and n not in bad)
        assert sorted(dataset[split]["file_name"]) == expected
    report = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(report) == 1 and f"skipped {len(bad)} unreadable clips" in report[0]
    assert all(name in report[0] for name in bad)


def test_unreadable_datafile_clips_are_all_reported_or_skipped(release_copy, caplog):
    from vocalsound_hf import load_vocalsound

    audio = release_copy / "audio_16k"
    train = _ground_truth(release_copy)["datafiles"]["train"]
    empty, garbage, missing = train[0], train[5], train[9]
    (audio / empty).write_bytes(b"")
    (audio / garbage).write_bytes(np.random.default_rng(0).bytes(2048))
    (audio / missing).unlink()

    with pytest.raises(ValueError) as error:
        load_vocalsound(release_copy)
    message = str(error.value)
    assert "3 clips" in message and "skip_bad_audio=True" in message
    for name, reason in ((empty, "empty"), (garbage, "undecodable"), (missing, "missing")):
        assert f"train: {name}: {reason}" in message

    with caplog.at_level(logging.WARNING, logger="vocalsound_hf.data"):
        dataset = load_vocalsound(release_copy, skip_bad_audio=True)
    assert dataset["train"]["file_name"] == [n for n in train if n not in (empty, garbage, missing)]
    report = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped 3 unreadable clips (train 3; empty 1, missing 1, undecodable 1)" in report


def test_appledouble_files_are_not_clips(release_copy):
    from vocalsound_hf import load_vocalsound

    # Without the rule, "._f..." fails the clip-name check of the speakers mode.
    shutil.copy(next((release_copy / "__MACOSX" / "audio_16k").glob("._*.wav")), release_copy / "audio_16k")
    dataset = load_vocalsound(release_copy, split_source="speakers", skip_bad_audio=True)
    names = [name for split in SPLITS for name in dataset[split]["file_name"]]
    assert names and not any(name.startswith("._") for name in names)


def test_audio_folder_of_another_name_is_detected(release_44k, tmp_path):
    from vocalsound_hf import load_vocalsound

    # The 44.1 kHz folder name is unconfirmed: a single audio* folder is taken whatever its name.
    copy = Path(shutil.copytree(release_44k, tmp_path / "vs_release_44k"))
    (copy / "audio_44k").rename(copy / "audio_44.1k")
    dataset = load_vocalsound(copy, config="44k")
    assert dataset["test"]["file_name"] == _ground_truth(release_44k)["datafiles"]["test"]
    with pytest.raises(FileNotFoundError, match="audio_16k"):
        load_vocalsound(copy, config="16k")


def test_wrong_config_for_the_release_says_which_release_it_is(release_44k):
    from vocalsound_hf import load_vocalsound

    with pytest.raises(FileNotFoundError, match="audio_44k/ is there: is this the 44k release"):
        load_vocalsound(release_44k, config="16k")


def test_clips_at_another_rate_are_reported_and_resampled(release_copy, caplog):
    from vocalsound_hf import load_vocalsound

    name = _ground_truth(release_copy)["datafiles"]["validation"][0]
    audio, _ = sf.read(release_copy / "audio_16k" / name, dtype="int16")
    sf.write(release_copy / "audio_16k" / name, audio, 22050, subtype="PCM_16")
    with caplog.at_level(logging.WARNING, logger="vocalsound_hf.data"):
        validation = load_vocalsound(release_copy)["validation"]
    assert any("1 clips" in r.getMessage() and "(1 at 22050 Hz)" in r.getMessage() for r in caplog.records)
    assert validation[0]["audio"].get_all_samples().sample_rate == 16000


def test_missing_release_folder_is_named(tmp_path):
    from vocalsound_hf import load_vocalsound

    with pytest.raises(FileNotFoundError, match="no_such_release"):
        load_vocalsound(tmp_path / "no_such_release")


@pytest.mark.parametrize("part", ["meta/val_meta.csv", "datafiles/te.json", "audio_16k"])
def test_missing_part_of_the_layout_is_named_with_the_expected_layout(release_copy, part):
    from vocalsound_hf import load_vocalsound

    target = release_copy / part
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(FileNotFoundError) as error:
        load_vocalsound(release_copy)
    assert Path(part).stem in str(error.value) and "expected the official release layout" in str(error.value)


def test_speaker_without_meta_row_gets_none_metadata_reported_once(release_copy, caplog):
    from vocalsound_hf import load_vocalsound

    meta_path = release_copy / "meta" / "tr_meta.csv"
    rows = meta_path.read_text().splitlines(keepends=True)
    dropped = rows[1].split(",")[0]
    meta_path.write_text("".join(rows[:1] + rows[2:]))

    with caplog.at_level(logging.WARNING, logger="vocalsound_hf.data"):
        train = load_vocalsound(release_copy)["train"]
    rows = _rows(train)
    orphan = [row for row in rows if row["speaker_id"] == dropped]
    assert orphan
    fields = ("gender", "age", "age_group", "country", "native_language", "health_condition")
    assert all(row[field] is None for row in orphan for field in fields)
    assert all(row["gender"] is not None for row in rows if row["speaker_id"] != dropped)
    reports = [r.getMessage() for r in caplog.records if "no row in meta" in r.getMessage()]
    assert reports == [f"1 speakers have no row in meta/ and get None metadata: {dropped}"]


def test_meta_header_row_is_accepted(release_copy, synth_release):
    from vocalsound_hf import load_vocalsound

    for stem in SPLIT_FILES.values():
        path = release_copy / "meta" / f"{stem}_meta.csv"
        path.write_text("spk_id,gender,age,country,native language,health condition\n" + path.read_text())
    assert _rows(load_vocalsound(release_copy)["test"]) == _rows(load_vocalsound(synth_release)["test"])


def test_bad_meta_value_names_file_row_and_field(release_copy):
    from vocalsound_hf import load_vocalsound

    path = release_copy / "meta" / "te_meta.csv"
    rows = path.read_text().splitlines()
    cells = rows[2].split(",")
    rows[2] = ",".join([cells[0], "Robot", *cells[2:]])
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(
        ValueError, match=r"te_meta\.csv: row 3: gender 'Robot', expected one of female, male, other"
    ):
        load_vocalsound(release_copy)


def test_release_rebuilt_in_place_is_not_served_from_cache(release_copy):
    from vocalsound_hf import load_vocalsound

    before = load_vocalsound(release_copy)["validation"].num_rows
    path = release_copy / "datafiles" / "val.json"
    data = json.loads(path.read_text())
    data["data"] = data["data"][:-2]
    path.write_text(json.dumps(data))
    assert load_vocalsound(release_copy)["validation"].num_rows == before - 2


def test_num_proc_gives_the_same_dataset(synth_release, tmp_path):
    from vocalsound_hf import load_vocalsound

    single = load_vocalsound(synth_release)
    parallel = load_vocalsound(synth_release, num_proc=2, cache_dir=str(tmp_path / "cache"))
    for split in SPLITS:
        assert _rows(parallel[split]) == _rows(single[split])


def test_download_is_checked_and_a_bad_download_is_not_cached(release_16k_zip, tmp_path, monkeypatch):
    """The official URL, served from fsspec's in-memory file system, goes through the real download cache."""
    import datasets
    import fsspec

    from vocalsound_hf import load_vocalsound, release
    from vocalsound_hf.data.builder import ChecksumError

    good = release_16k_zip.read_bytes()
    url = "memory://dropbox/vs_release_16k.zip"
    memory = fsspec.filesystem("memory")
    monkeypatch.setitem(release.RELEASE_URLS, "16k", url)
    monkeypatch.setitem(release.RELEASE_SHA256, "16k", hashlib.sha256(good).hexdigest())
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # memory:// reaches no network
    cache = tmp_path / "cache"
    downloads = cache / "downloads"

    corrupted = bytearray(good)
    corrupted[len(good) // 2] ^= 0xFF
    memory.pipe(url, bytes(corrupted))
    try:
        for _ in range(2):  # the second call downloads again instead of trusting the first one
            with pytest.raises(ChecksumError, match="does not match the published"):
                load_vocalsound(None, cache_dir=str(cache))
            assert not [p for p in downloads.iterdir() if p.is_file() and not p.name.endswith(".lock")]

        memory.pipe(url, good)
        dataset = load_vocalsound(None, cache_dir=str(cache))
    finally:
        memory.rm(url)
    names = {name for split in SPLITS for name in dataset[split]["file_name"]}
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        datafile = json.loads(archive.read("datafiles/tr.json"))
    assert {PurePosixPath(e["wav"]).name for e in datafile["data"]} <= names
    assert dataset["train"].num_rows == len(datafile["data"])


def _reference_norm_stats(paths):
    """Mean and unbiased std over every frame of every clip (kaldi.fbank per clip, no padding), in float64."""
    import torch
    from torchaudio.compliance import kaldi

    frames = []
    for path in paths:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        waveform = torch.from_numpy(audio.T.copy()).mean(0, keepdim=True)
        fbank = kaldi.fbank(
            waveform, sample_frequency=rate, window_type="hanning", num_mel_bins=128, dither=0.0
        )
        frames.append(fbank.to(torch.float64))
    values = torch.cat(frames)
    return values.mean().item(), values.std().item()


def test_norm_stats_are_over_every_frame_of_every_clip(synth_release):
    from vocalsound_hf import compute_norm_stats, load_vocalsound

    validation = load_vocalsound(synth_release)["validation"]
    paths = [synth_release / "audio_16k" / name for name in validation["file_name"]]
    stats = compute_norm_stats(validation)
    assert (stats.mean, stats.std) == pytest.approx(_reference_norm_stats(paths), rel=1e-6)
    assert stats.describes() and not stats.describes(num_mel_bins=64) and not stats.describes(44_100)


def test_norm_stats_of_an_older_export_are_not_taken_for_these():
    from vocalsound_hf.data.stats import NormStats

    # What exports wrote before the definition was recorded: padded to 512 frames, batches of 1000.
    old = NormStats.from_card_entry(
        {"config_name": "16k", "mean": -3.67, "std": 4.3, "split": "train", "num_mel_bins": 128,
         "max_length": 512, "batch_size": 1000}
    )  # fmt: skip
    assert (old.mean, old.std) == (-3.67, 4.3) and not old.describes()
    new = NormStats(-6.123456789012345, 4.25)
    assert NormStats.from_card_entry(new.card_entry("16k")) == new  # the floats in full


def test_a_non_finite_sample_stops_the_stats_naming_the_clip(tmp_path):
    import datasets

    from vocalsound_hf import compute_norm_stats

    waveform = np.zeros(16000, np.float32)
    waveform[8000] = np.nan
    path = tmp_path / "bad.wav"
    sf.write(path, waveform, 16000, subtype="FLOAT")  # a float WAV keeps the NaN (16-bit PCM could not)
    split = datasets.Dataset.from_dict(
        {"audio": [str(path)], "file_name": ["bad.wav"]},
        features=datasets.Features({"audio": datasets.Audio(), "file_name": datasets.Value("string")}),
    )
    with pytest.raises(ValueError, match=r"bad.wav: sample 8000 \(at 0.500 s\) is nan"):
        compute_norm_stats(split)


def test_read_norm_stats_without_a_card_or_stats_is_none(tmp_path):
    from vocalsound_hf.data.stats import read_norm_stats

    assert read_norm_stats(tmp_path) is None
    (tmp_path / "README.md").write_text("---\nlicense: cc-by-sa-4.0\n---\n\n# A card\n")
    assert read_norm_stats(tmp_path) is None
