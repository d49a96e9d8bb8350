"""What a failed or killed run leaves on disk: nothing that a later run serves, and nothing it does not clean.

A damaged release zip is reported naming the zip and the member, and its partial extraction is removed from
the datasets cache; the temporary siblings of a process killed with SIGKILL are removed by the next run.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from vocalsound_hf.fileio import staged_path, temp_sibling, write_text_atomically
from vocalsound_hf.release import SPLITS

# A zip's local file header: signature, then fixed fields up to the name and extra lengths at offset 26.
_LOCAL_HEADER_SIZE = 30
# A central directory entry: the CRC-32 at offset 16, the name, extra and comment lengths at offset 28.
_CENTRAL_SIGNATURE = b"PK\x01\x02"
_END_SIGNATURE = b"PK\x05\x06"


@pytest.fixture(scope="module")
def good_zip(tmp_path_factory) -> Path:
    from vocalsound_hf.data.synth_release import make_synthetic_release

    out = tmp_path_factory.mktemp("good_zip") / "vs_release_16k"
    return make_synthetic_release(out, num_speakers=12, seed=3, as_zip=True)


def _damaged(good: bytes, how: str) -> tuple[bytes, str]:
    """``good`` with one deflated wav member (the middle one) damaged ``how``; the member's name."""
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        wavs = [
            info
            for info in archive.infolist()
            if info.filename.endswith(".wav") and info.compress_type == zipfile.ZIP_DEFLATED
        ]
    member = wavs[len(wavs) // 2]
    data = bytearray(good)
    start = member.header_offset
    if how == "deflate":
        name_length, extra_length = struct.unpack_from("<HH", data, start + 26)
        # The first block header of the deflate stream: BTYPE 11 is reserved, an invalid block type.
        data[start + _LOCAL_HEADER_SIZE + name_length + extra_length] |= 0b110
    elif how == "crc":
        entry = struct.unpack_from("<I", data, data.rindex(_END_SIGNATURE) + 16)[0]
        while data[entry : entry + 4] == _CENTRAL_SIGNATURE:
            name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, entry + 28)
            if data[entry + 46 : entry + 46 + name_length].decode() == member.filename:
                data[entry + 16] ^= 0xFF
            entry += 46 + name_length + extra_length + comment_length
    elif how == "header":
        data[start] ^= 0xFF
    return bytes(data), member.filename


def _cached_files(cache: Path) -> list[Path]:
    """Files in a datasets cache other than its (empty) lock files."""
    return [p for p in cache.rglob("*") if p.is_file() and p.suffix != ".lock"]


@pytest.mark.parametrize(
    "how, reason",
    [("deflate", "invalid block type"), ("crc", "Bad CRC-32"), ("header", "Bad magic number")],
)
def test_damaged_zip_names_the_member_and_leaves_no_extraction(good_zip, tmp_path, how, reason):
    from vocalsound_hf import load_vocalsound
    from vocalsound_hf.data.builder import CorruptArchiveError

    broken, member = _damaged(good_zip.read_bytes(), how)
    release = tmp_path / good_zip.name
    release.write_bytes(broken)
    cache = tmp_path / "cache"
    with pytest.raises(CorruptArchiveError) as caught:
        load_vocalsound(release, cache_dir=str(cache))
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)  # what the CLI reports in one line
    assert "\n" not in message
    assert message.startswith(f"{release}: member {member} is damaged")
    assert reason in message
    assert _cached_files(cache) == []
    assert not [p for p in (cache / "downloads" / "extracted").iterdir() if p.is_dir()]

    # The same path, repaired: extracted and built afresh, nothing of the failed run in the way.
    release.write_bytes(good_zip.read_bytes())
    dataset = load_vocalsound(release, cache_dir=str(cache))
    expected = load_vocalsound(good_zip, cache_dir=str(tmp_path / "reference_cache"))
    assert expected["train"].num_rows > 0
    for split in SPLITS:
        assert dataset[split]["file_name"] == expected[split]["file_name"]


def test_cli_reports_a_damaged_zip_in_one_line(good_zip, tmp_path):
    broken, member = _damaged(good_zip.read_bytes(), "deflate")
    release = tmp_path / "broken.zip"
    release.write_bytes(broken)
    cache, out = tmp_path / "cache", tmp_path / "export"
    result = subprocess.run(
        [
            Path(sys.executable).with_name("vocalsound-hf"),
            "export-dataset",
            "--data-dir",
            release,
            "--out",
            out,
        ],
        env={**os.environ, "HF_DATASETS_CACHE": str(cache)},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("vocalsound-hf export-dataset:")]
    assert len(errors) == 1, result.stderr
    assert f"{release}: member {member} is damaged" in errors[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.zip", "cache"]  # no staging folders
    assert _cached_files(cache) == []


def test_damaged_download_is_dropped_with_its_extraction(good_zip, tmp_path, monkeypatch):
    """A release without a published sha256 (the 44.1 kHz one) is checked when it is extracted."""
    import datasets
    import fsspec

    from vocalsound_hf import load_vocalsound, release
    from vocalsound_hf.data.builder import CorruptArchiveError

    url = "memory://dropbox/unchecked_release.zip"
    memory = fsspec.filesystem("memory")
    monkeypatch.setitem(release.RELEASE_URLS, "16k", url)
    monkeypatch.setitem(release.RELEASE_SHA256, "16k", None)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # memory:// reaches no network
    cache = tmp_path / "cache"
    broken, member = _damaged(good_zip.read_bytes(), "crc")
    memory.pipe(url, broken)
    try:
        with pytest.raises(CorruptArchiveError, match=f"member {member} is damaged.*removed from the cache"):
            load_vocalsound(None, cache_dir=str(cache))
        assert _cached_files(cache) == []
        memory.pipe(url, good_zip.read_bytes())
        dataset = load_vocalsound(None, cache_dir=str(cache))
    finally:
        memory.rm(url)
    with zipfile.ZipFile(good_zip) as archive:
        wavs = {Path(name).name for name in archive.namelist() if name.endswith(".wav")}
    assert dataset["train"].num_rows > 0
    assert set(dataset["train"]["file_name"]) <= wavs


def test_zip_with_data_before_it_is_refused_in_one_line(good_zip, tmp_path):
    from vocalsound_hf import load_vocalsound
    from vocalsound_hf.data.builder import CorruptArchiveError

    # zipfile reads such a file (a self-extracting archive is one); the datasets library does not.
    release = tmp_path / "prefixed.zip"
    release.write_bytes(b"#!/bin/sh\nexit 0\n" + good_zip.read_bytes())
    with pytest.raises(CorruptArchiveError, match=r"prefixed\.zip: the datasets library does not recognise"):
        load_vocalsound(release, cache_dir=str(tmp_path / "cache"))


def test_truncated_zip_is_named_as_truncated(good_zip, tmp_path):
    from vocalsound_hf import load_vocalsound
    from vocalsound_hf.data.builder import CorruptArchiveError

    release = tmp_path / "cut.zip"
    release.write_bytes(good_zip.read_bytes()[: good_zip.stat().st_size // 2])
    with pytest.raises(CorruptArchiveError, match=r"cut\.zip: a zip without its table of contents"):
        load_vocalsound(release, cache_dir=str(tmp_path / "cache"))


# --- temporary siblings of killed runs ----------------------------------------------------------------------

# Runs an export whose last step, moving the finished folder into place, kills its own process instead.
_KILLED_EXPORT = textwrap.dedent(
    """
    import os, signal, sys
    from vocalsound_hf.data import export

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    export._install = die
    export.export_dataset(sys.argv[1], sys.argv[2])
    """
)


def _partials(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.*.partial"))


@pytest.mark.slow  # a fresh interpreter importing datasets and torch, then two exports: ~45 s
def test_export_killed_with_sigkill_is_cleaned_by_the_next_export(synth_release, tmp_path, caplog):
    from vocalsound_hf.data.export import export_dataset

    out = tmp_path / "vocalsound"
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_EXPORT, synth_release, out], capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()
    leftovers = _partials(out)
    assert len(leftovers) == 2  # the staged repository and the builder's folder
    assert any((p / "README.md").is_file() for p in leftovers)

    with caplog.at_level(logging.INFO, logger="vocalsound_hf.fileio"):
        assert export_dataset(synth_release, out) == out
    assert not any(p.exists() for p in leftovers)
    assert _partials(out) == []
    assert (out / "README.md").is_file()
    assert {p.name.split("-")[0] for p in (out / "16k").glob("*.parquet")} == set(SPLITS)
    removals = [r.getMessage() for r in caplog.records if "leftover" in r.getMessage()]
    assert len(removals) == 1
    assert all(p.name in removals[0] for p in leftovers)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()  # reaped: its process id names no process until the system hands it out again
    return child.pid


def _sibling_of(target: Path, pid: int) -> Path:
    """A temporary name of ``target`` as process ``pid`` of this host would have made it."""
    own = temp_sibling(target)
    return own.with_name(own.name.replace(f"-{os.getpid()}-", f"-{pid}-"))


def test_staged_path_removes_only_dead_owners_siblings_of_its_target(tmp_path, caplog):
    target = tmp_path / "model"
    own = temp_sibling(target)
    dead_dir, dead_file = _sibling_of(target, _dead_pid()), _sibling_of(target, _dead_pid())
    own.mkdir()
    dead_dir.mkdir()
    (dead_dir / "weights.bin").write_bytes(b"x" * 100)
    dead_file.write_bytes(b"half a file")
    host, pid = dead_dir.name[len(".model.") :].split("-")[:2]
    kept = [
        own,  # this process is alive
        tmp_path / ".model.0123abcd.partial",  # no owner in the name
        tmp_path / ".model.partial",
        tmp_path / f".model.{'0' * 8 if host != '0' * 8 else '1' * 8}-{pid}-0123abcd.partial",  # another host
        tmp_path / f".other.{host}-{pid}-0123abcd.partial",  # another target
        tmp_path / f".model.v2.{host}-{pid}-0123abcd.partial",  # the target model.v2
        tmp_path / f"model.{host}-{pid}-0123abcd.partial",  # not hidden
    ]
    for path in kept[1:]:
        path.write_text("someone else's")

    with caplog.at_level(logging.INFO, logger="vocalsound_hf.fileio"), staged_path(target) as tmp:
        assert not dead_dir.exists() and not dead_file.exists()
        assert all(path.exists() for path in kept)
        assert tmp != own and not tmp.exists()
    assert all(path.exists() for path in kept)
    messages = [r.getMessage() for r in caplog.records if r.name == "vocalsound_hf.fileio"]
    assert len(messages) == 1
    assert dead_dir.name in messages[0] and dead_file.name in messages[0] and str(target) in messages[0]


def test_atomic_writes_clean_a_killed_writers_file(tmp_path):
    results = tmp_path / "results.json"
    dead = _sibling_of(results, _dead_pid())
    dead.write_text('{"half": ')
    write_text_atomically(results, "{}")
    assert results.read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
