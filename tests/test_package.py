"""The package itself: a light import, a lazy public API, the console script, the declared metadata."""

from __future__ import annotations

import configparser
import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

HEAVY = ("torch", "torchaudio", "transformers", "datasets", "gradio", "accelerate", "evaluate")


def _run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout


def test_import_is_light():
    loaded = json.loads(
        _run_python(
            f"import json, sys, vocalsound_hf; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
        )
    )
    assert loaded == [], f"'import vocalsound_hf' imported {loaded}"


def test_cli_help_is_light():
    loaded = json.loads(
        _run_python(
            "import contextlib, io, json, sys\n"
            "from vocalsound_hf import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            "        cli.main(['--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
        )
    )
    assert loaded == []


def test_public_api_resolves_every_name():
    import vocalsound_hf

    for name in vocalsound_hf.__all__:
        assert getattr(vocalsound_hf, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        vocalsound_hf.nope  # noqa: B018


def test_console_script_is_installed_and_answers():
    exe = REPO_ROOT / ".venv" / "bin" / "vocalsound-hf"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "vocalsound_hf.cli"]
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for sub in (
        "synth-release",
        "export-dataset",
        "norm-stats",
        "init-model",
        "convert-checkpoint",
        "predict",
    ):
        assert sub in done.stdout


def test_metadata_lives_in_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    assert cfg["options.entry_points"]["console_scripts"].strip() == "vocalsound-hf = vocalsound_hf.cli:main"
    assert set(cfg["options.extras_require"]) >= {"train", "demo", "dev"}
    assert cfg["options"]["python_requires"].strip() == ">=3.10"
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert "[project]" not in pyproject, "package metadata belongs in setup.cfg"


def test_constraints_pin_the_verified_stack():
    pins = dict(
        line.split("==", 1)
        for line in (REPO_ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["torch"] == "2.14.1"
    assert pins["torchaudio"] == "2.11.0"
    assert pins["torchcodec"] == "0.17.0"
    for package, major in (("transformers", "5"), ("datasets", "5")):
        assert pins[package].split(".")[0] == major
