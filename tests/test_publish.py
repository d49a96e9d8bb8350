"""The Hub export: Parquet + card, loaded back by plain ``datasets`` in a process without vocalsound_hf."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vocalsound_hf.release import CITATION, CLASS_NAMES, SPLITS

# Loads every config of an export with datasets alone and dumps rows and decoded audio for the test.
_LOADER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import datasets

    out, dump = sys.argv[1], sys.argv[2]
    rows, audio = {}, {}
    for config in ("16k", "44k"):
        for split, data in datasets.load_dataset(out, config).items():
            rows[f"{config}/{split}"] = {
                "features": data.features.to_dict(),
                "rows": data.remove_columns("audio").to_list(),
            }
            for example in data:
                samples = example["audio"].get_all_samples()
                key = f"{config}/{split}/{example['file_name']}"
                audio[key] = samples.data.numpy()
                audio[key + "/rate"] = np.array(samples.sample_rate)
    assert "vocalsound_hf" not in sys.modules
    json.dump(rows, open(dump + ".json", "w"))
    np.savez(dump + ".npz", **audio)
    """
)


@pytest.fixture(scope="module")
def release_44k_zip(tmp_path_factory):
    from vocalsound_hf.data.synth_release import make_synthetic_release

    out = tmp_path_factory.mktemp("zip44k") / "vs_release_44k"
    return make_synthetic_release(out, sampling_rate=44100, num_speakers=12, seed=1, as_zip=True)


@pytest.fixture(scope="module")
def exported(synth_release, release_44k_zip, tmp_path_factory):
    """Both configs exported into one folder: 16k through the API in parallel and in several shards, 44k by the CLI."""
    from vocalsound_hf.cli import main
    from vocalsound_hf.data.export import export_dataset

    out = tmp_path_factory.mktemp("export") / "vocalsound"
    assert export_dataset(synth_release, out, config="16k", num_proc=2, max_shard_size="2MB") == out
    argv = ["export-dataset", "--data-dir", str(release_44k_zip), "--out", str(out), "--config", "44k"]
    assert main(argv) == 0
    return out


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow  # a fresh interpreter importing datasets and torch, and every clip decoded: ~25 s
def test_export_round_trip_without_vocalsound_hf(exported, synth_release, release_44k_zip, tmp_path):
    from vocalsound_hf import load_vocalsound

    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "fresh_cache"), "HF_HUB_OFFLINE": "1"}
    dump = tmp_path / "dump"
    subprocess.run(
        [sys.executable, "-c", _LOADER, str(exported), str(dump)],
        check=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    loaded = json.loads(Path(f"{dump}.json").read_text())
    audio = np.load(f"{dump}.npz")

    assert len(list((exported / "16k").glob("train-*-of-*.parquet"))) > 1  # max_shard_size took effect
    with zipfile.ZipFile(release_44k_zip) as archive:
        sources = {
            "16k": lambda name: sf.read(synth_release / "audio_16k" / name, dtype="float32", always_2d=True),
            "44k": lambda name: sf.read(
                io.BytesIO(archive.read(f"audio_44k/{name}")), dtype="float32", always_2d=True
            ),
        }
        for config, data_dir in (("16k", synth_release), ("44k", release_44k_zip)):
            built = load_vocalsound(data_dir, config=config)
            for split in SPLITS:
                got = loaded[f"{config}/{split}"]
                assert got["features"] == built[split].features.to_dict()
                assert got["rows"] == built[split].remove_columns("audio").to_list()
                for row in got["rows"]:
                    key = f"{config}/{split}/{row['file_name']}"
                    expected, rate = sources[config](row["file_name"])
                    assert int(audio[key + "/rate"]) == rate
                    np.testing.assert_allclose(audio[key], expected.T, atol=1e-6, err_msg=key)


def test_card_declares_configs_features_splits_licence_task_and_stats(
    exported, synth_release, release_44k_zip
):
    from huggingface_hub import DatasetCard

    from vocalsound_hf import compute_norm_stats, load_vocalsound
    from vocalsound_hf.data.stats import read_norm_stats

    card = DatasetCard.load(exported / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "cc-by-sa-4.0"
    assert data["task_categories"] == ["audio-classification"]
    configs = {c["config_name"]: c for c in data["configs"]}
    assert sorted(configs) == ["16k", "44k"]
    assert [name for name, c in configs.items() if c.get("default")] == ["16k"]
    assert CITATION in card.text

    infos = {info["config_name"]: info for info in data["dataset_info"]}
    for config, data_dir in (("16k", synth_release), ("44k", release_44k_zip)):
        built = load_vocalsound(data_dir, config=config)
        features = {f["name"]: f["dtype"] for f in infos[config]["features"]}
        assert list(features["label"]["class_label"]["names"].values()) == list(CLASS_NAMES)
        assert features["audio"]["audio"]["sampling_rate"] == {"16k": 16000, "44k": 44100}[config]
        assert {s["name"]: s["num_examples"] for s in infos[config]["splits"]} == {
            split: built[split].num_rows for split in SPLITS
        }
        # The card holds exactly the stats of the raw release's train split: training through --data_dir and
        # through the export normalises alike.
        assert read_norm_stats(exported, config) == compute_norm_stats(built["train"])
    assert read_norm_stats(exported) == read_norm_stats(exported, "16k")


def test_cli_norm_stats_of_an_export_match_the_card(exported, capsys):
    from vocalsound_hf.cli import main
    from vocalsound_hf.data.stats import read_norm_stats

    assert main(["norm-stats", "--data-dir", str(exported), "--config", "44k"]) == 0
    printed = dict(part.split("=") for part in capsys.readouterr().out.split())
    card = read_norm_stats(exported, "44k")
    assert (float(printed["mean"]), float(printed["std"])) == (card.mean, card.std)


def test_export_refuses_a_folder_that_is_not_an_export(synth_release, tmp_path):
    from vocalsound_hf.data.export import export_dataset

    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an earlier VocalSound export"):
        export_dataset(synth_release, out)
    assert _tree(out) == {"notes.txt": hashlib.sha256(b"keep me").hexdigest()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_failed_export_leaves_the_previous_one_and_skipping_is_recorded(
    exported, synth_release, tmp_path, monkeypatch
):
    import huggingface_hub
    from huggingface_hub import DatasetCard

    from vocalsound_hf.data.export import export_dataset

    out = Path(shutil.copytree(exported, tmp_path / "vocalsound"))
    release = Path(shutil.copytree(synth_release, tmp_path / "release"))
    before = _tree(out)
    broken = json.loads((release / "datafiles" / "te.json").read_text())["data"][0]["wav"].rsplit("/", 1)[-1]
    (release / "audio_16k" / broken).write_bytes(b"")

    with pytest.raises(ValueError, match=broken):
        export_dataset(release, out)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release", "vocalsound"]

    calls = []

    class FakeHfApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    export_dataset(release, out, skip_bad_audio=True, push_to_hub="someone/vocalsound")

    card = DatasetCard.load(out / "README.md")
    exports = {e["config_name"]: e for e in card.data.to_dict()["export_info"]}
    assert exports["16k"]["skipped_clips"] == [f"test/{broken}: empty (0 bytes)"]
    assert {c["config_name"] for c in card.data.to_dict()["configs"]} == {"16k", "44k"}
    assert _tree(out)["44k/test-00000-of-00001.parquet"] == before["44k/test-00000-of-00001.parquet"]
    assert 'load_dataset("someone/vocalsound", "16k")' in card.text

    assert calls[0] == ("create_repo", "someone/vocalsound", {"repo_type": "dataset", "exist_ok": True})
    upload = calls[1][1]
    assert upload["repo_id"] == "someone/vocalsound" and upload["repo_type"] == "dataset"
    assert Path(upload["folder_path"]) == out
    assert upload["allow_patterns"] == ["16k/*.parquet", "README.md"]
    assert upload["delete_patterns"] == ["16k/*.parquet"]


def test_cli_export_of_a_missing_release_fails_in_one_line(tmp_path, capsys):
    from vocalsound_hf.cli import main

    missing = tmp_path / "vs_release_16k.zip"
    assert main(["export-dataset", "--data-dir", str(missing), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert (
        error.count("\n") == 0 and str(missing) in error and "expected a VocalSound release folder" in error
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []
