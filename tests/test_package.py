"""The package itself: a light import, a lazy public API, the console script."""

from __future__ import annotations

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
