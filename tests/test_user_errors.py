"""Wrong input from users gets one line naming the file or argument and what was expected, never a traceback.

Covers the converter on AST-like checkpoints of another layout, pickles holding code, ``predict`` on
directories, and model locations that do not exist (``predict``, the API, the Space, ``init-model``). The
command line runs in a subprocess where the exact stderr matters; its siblings run in-process.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import original_state_dict

from vocalsound_hf import cli
from vocalsound_hf.inference.classifier import AudioClassifier, ModelLoadError
from vocalsound_hf.inference.predict import AUDIO_SUFFIXES, audio_files
from vocalsound_hf.models.build import build_ast
from vocalsound_hf.models.checkpoints import missing_location, read_state_dict
from vocalsound_hf.models.conversion import convert_original_checkpoint, read_label_csv

REPO_ROOT = Path(__file__).resolve().parents[1]
APP = REPO_ROOT / "spaces_demo" / "app.py"
# The installed console script, as users run it; ``-m`` where the venv has none.
SCRIPT = Path(sys.executable).with_name("vocalsound-hf")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "vocalsound_hf.cli"]
UNSAFE_HINT = "weights_only=False"
SR = 16_000
# 128 mel bins x 32 frames at stride 16: an 8x2 grid.
STRIDE_ARGS = {"fstride": 16, "tstride": 16, "input_tdim": 32}
NUM_PATCHES = 16


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # The Hub stays off in the subprocess too (conftest set it in this process's environment).
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [*COMMAND, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def assert_one_error_line(result: subprocess.CompletedProcess, command: str) -> str:
    """The run failed with exactly one stderr line, ``vocalsound-hf COMMAND: error: ...``; returns it."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"vocalsound-hf {command}: error: ")
    return lines[0]


def original_state(hidden=16, layers=2, num_patches=NUM_PATCHES, num_labels=3) -> dict[str, torch.Tensor]:
    """A small state dict in the original AST's key format (``module.v.*`` timm keys and ``mlp_head``)."""
    return original_state_dict(hidden=hidden, layers=layers, num_patches=num_patches, num_labels=num_labels)


def save_state(path: Path, state: dict) -> Path:
    torch.save(state, path)
    # What the converter will see: the file loads safely, so every refusal below is about its contents.
    assert torch.load(path, weights_only=True).keys() == state.keys()
    return path


def _without_blocks() -> dict[str, torch.Tensor]:
    """The issue's file: the embeddings and head of an AST, and no transformer blocks."""
    return {k: v for k, v in original_state().items() if ".blocks." not in k}


def _odd(kind: str) -> dict[str, torch.Tensor]:
    state = original_state()
    if kind == "no_blocks":
        return _without_blocks()
    if kind == "embeddings_only":
        keep = ("module.v.patch_embed.proj.weight", "module.v.pos_embed", "module.v.cls_token")
        return {k: state[k] for k in keep}
    if kind == "partial_block":
        del state["module.v.blocks.1.mlp.fc2.weight"]
    elif kind == "block_gap":
        state = {k.replace("v.blocks.1.", "v.blocks.2."): v for k, v in state.items()}
    elif kind == "flat_pos_embed":
        state["module.v.pos_embed"] = torch.zeros(NUM_PATCHES + 2, 16)
    elif kind == "scalar_fc1":
        state["module.v.blocks.0.mlp.fc1.weight"] = torch.tensor(1.0)
    elif kind == "vector_head":
        state["module.mlp_head.1.weight"] = torch.zeros(3)
    elif kind == "qkv_rows":
        state["module.v.blocks.0.attn.qkv.weight"] = torch.zeros(47, 16)
    elif kind == "rgb_patches":
        state["module.v.patch_embed.proj.weight"] = torch.zeros(16, 3, 16, 16)
    elif kind == "no_patches":
        state["module.v.pos_embed"] = torch.zeros(1, 2, 16)
    elif kind == "narrow_fc2":
        state["module.v.blocks.1.mlp.fc2.weight"] = torch.zeros(16, 10)
    return state


ODD_CHECKPOINTS = [
    ("no_blocks", r"not an original AST checkpoint: it has no v\.blocks\.0\.\* \(no transformer blocks\)"),
    ("embeddings_only", r"not an original AST checkpoint: it has no v\.dist_token, mlp_head\.1\.weight"),
    ("partial_block", r"not an original AST checkpoint: it has no v\.blocks\.1\.mlp\.fc2\.weight$"),
    ("block_gap", r"not an original AST checkpoint: it has no v\.blocks\.1\.norm1\.weight, .* and 7 more"),
    ("flat_pos_embed", r"v\.pos_embed has shape \[18, 16\], expected \[1, patches \+ 2, width\]"),
    ("scalar_fc1", r"v\.blocks\.0\.mlp\.fc1\.weight has shape \[\], expected \[intermediate, width\]"),
    ("vector_head", r"mlp_head\.1\.weight has shape \[3\], expected \[labels, width\]"),
    ("qkv_rows", r"blocks\.0\.attn\.qkv\.weight has shape \[47, 16\], whose rows do not split"),
    ("rgb_patches", r"proj\.weight has shape \[16, 3, 16, 16\], expected \[width, 1, 16, 16\]"),
    ("no_patches", r"v\.pos_embed has shape \[1, 2, 16\], expected .* with at least one patch"),
    ("narrow_fc2", r"does not fit an AST of its own inferred shape: .*mlp\.fc2\.weight is \[16, 10\]"),
]


def test_the_well_formed_checkpoint_converts(tmp_path):
    """The control for the refusals below: the unmodified small checkpoint converts with its geometry."""
    checkpoint = save_state(tmp_path / "good.pth", original_state())
    out = convert_original_checkpoint(
        checkpoint, tmp_path / "out", **STRIDE_ARGS, norm_mean=-4.0, norm_std=4.0
    )
    config = json.loads((out / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["max_length"]) == (2, 16, 32)


@pytest.mark.parametrize(("kind", "message"), ODD_CHECKPOINTS)
def test_ast_like_checkpoint_is_refused_naming_what_is_wrong(tmp_path, kind, message):
    checkpoint = save_state(tmp_path / f"{kind}.pth", _odd(kind))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message) as caught:
        convert_original_checkpoint(checkpoint, out, **STRIDE_ARGS, norm_mean=-4.0, norm_std=4.0)
    assert checkpoint.name in str(caught.value)
    assert not out.exists()


def test_cli_names_the_missing_blocks_of_an_ast_like_checkpoint(tmp_path):
    """The issue's command: strides given, no blocks in the file."""
    checkpoint = save_state(tmp_path / "odd.pth", _without_blocks())
    strides = ["--fstride", "16", "--tstride", "16", "--input-tdim", "32"]
    result = run_cli("convert-checkpoint", checkpoint, tmp_path / "out", *strides)
    line = assert_one_error_line(result, "convert-checkpoint")
    assert f"{checkpoint} is not an original AST checkpoint: it has no v.blocks.0.*" in line
    assert "KeyError" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_audioset_pretrain_gives_the_same_message(tmp_path, capsys):
    checkpoint = save_state(tmp_path / "odd.pth", _without_blocks())
    with pytest.raises(ValueError, match=r"odd\.pth is not an original AST checkpoint: it has no v\.blocks"):
        build_ast(audioset_pretrain=str(checkpoint), model_size="tiny224")
    out = tmp_path / "model"
    assert cli.main(["init-model", str(out), "--model-size", "tiny224", "--audioset", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "odd.pth is not an original AST checkpoint: it has no v.blocks.0.*" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def _timm_deit(drop_blocks: bool) -> dict[str, torch.Tensor]:
    """A tiny timm-format DeiT (no ``v.`` prefix), with or without its blocks."""
    state = {k.removeprefix("module.v."): v for k, v in original_state().items() if "module.v." in k}
    state["patch_embed.proj.weight"] = torch.zeros(16, 3, 16, 16)
    return {k: v for k, v in state.items() if not (drop_blocks and k.startswith("blocks."))}


def test_imagenet_deit_without_blocks_names_what_is_missing(tmp_path):
    """The DeiT reader has the same fault as the converter had: a missing block was a KeyError."""
    checkpoint = save_state(tmp_path / "deit.pth", _timm_deit(drop_blocks=True))
    with pytest.raises(
        ValueError, match=r"deit\.pth is not a timm distilled DeiT state dict: it has no blocks\.0"
    ):
        build_ast(imagenet_pretrain=str(checkpoint), model_size="tiny224")


# --- Pickles holding code ------------------------------------------------------------------------------------


def plant_marker(path: str) -> None:
    """What unpickling ``Booby`` would run: proof that code in a checkpoint was executed."""
    Path(path).write_text("executed")


class Booby:
    """Unpickles by calling ``plant_marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return plant_marker, (str(self.marker),)


class PickledModel:
    """A custom object, as in a checkpoint that pickles the whole model."""

    def __init__(self):
        self.weight = torch.zeros(2)


def _code_checkpoint(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.pth"
    marker = tmp_path / "marker"
    state = original_state()
    if kind == "reduce":
        state["module.v.pos_embed"] = Booby(marker)
    elif kind == "object":
        state = {"model": PickledModel()}
    elif kind == "namespace":
        # A training checkpoint that keeps its argparse arguments next to the weights.
        import argparse

        state = {"model": state, "args": argparse.Namespace(lr=1e-4)}
    torch.save(state, path)
    assert not marker.exists()
    return path


def _message_chain(err: BaseException) -> str:
    """Everything a traceback of ``err`` would print, chained causes and contexts included."""
    return "".join(traceback.format_exception(err))


@pytest.mark.parametrize(
    ("kind", "refused"),
    [
        ("reduce", "test_user_errors.plant_marker"),
        ("object", "test_user_errors.PickledModel"),
        ("namespace", "argparse.Namespace"),
    ],
)
def test_pickled_code_is_refused_unrun_without_the_unsafe_hint(tmp_path, kind, refused):
    checkpoint = _code_checkpoint(tmp_path, kind)
    with pytest.raises(ValueError) as caught:
        read_state_dict(checkpoint)
    message = str(caught.value)
    assert message.startswith(f"{checkpoint} is not a checkpoint that loads safely: ")
    assert f"objects other than tensors ({refused}, from a pickled model or code)" in message
    assert "only state dicts of tensors (.pth, .pt, .bin) and .safetensors files are loaded" in message
    assert UNSAFE_HINT not in _message_chain(caught.value)
    assert not (tmp_path / "marker").exists()


def test_cli_refuses_a_checkpoint_with_code_in_one_line(tmp_path):
    checkpoint = _code_checkpoint(tmp_path, "reduce")
    result = run_cli("convert-checkpoint", checkpoint, tmp_path / "out")
    line = assert_one_error_line(result, "convert-checkpoint")
    assert str(checkpoint) in line and "objects other than tensors" in line
    assert UNSAFE_HINT not in result.stderr
    assert not (tmp_path / "marker").exists()
    assert not (tmp_path / "out").exists()


def test_imagenet_checkpoint_with_code_is_refused_the_same_way(tmp_path, capsys):
    checkpoint = _code_checkpoint(tmp_path, "object")
    out = tmp_path / "model"
    assert cli.main(["init-model", str(out), "--model-size", "tiny224", "--imagenet", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "object.pth is not a checkpoint that loads safely: it holds objects other than tensors" in err
    assert UNSAFE_HINT not in err


@pytest.mark.parametrize("kind", ["plain_pickle", "text", "empty"])
def test_other_unloadable_files_never_give_the_unsafe_hint(tmp_path, kind):
    path = tmp_path / f"{kind}.pth"
    if kind == "plain_pickle":
        # pickle.dump, not torch.save: torch also warns about the protocol, which would be a second line.
        path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=4))
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    else:
        path.write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="is not a checkpoint that loads safely") as caught:
            read_state_dict(path)
    assert str(caught.value).startswith(str(path))
    assert UNSAFE_HINT not in _message_chain(caught.value)
    assert not [w for w in caught_warnings if "pickle protocol" in str(w.message)]


def test_a_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match=r"is a directory, expected a checkpoint file"):
        convert_original_checkpoint(tmp_path, tmp_path / "out")


def test_label_csv_that_is_missing_or_binary_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no label CSV file at .*absent\.csv"):
        read_label_csv(tmp_path / "absent.csv")
    binary = tmp_path / "labels.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 20)
    with pytest.raises(ValueError, match=r"labels\.csv is not a label CSV \(UTF-8 text\)"):
        read_label_csv(binary)


# --- predict on directories -----------------------------------------------------------------------------------


def _noise(path: Path, seconds: float = 1.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.2 * rng.standard_normal(round(seconds * SR))).astype(np.float32), SR)
    return path


@pytest.fixture
def audio_dir(tmp_path) -> Path:
    """Audio at the top and in a subfolder, next to what is not audio and hidden files."""
    folder = tmp_path / "clips"
    _noise(folder / "b.wav", seed=1)
    _noise(folder / "a.flac", seed=2)
    _noise(folder / "sub" / "c.wav", seed=3)
    _noise(folder / ".hidden" / "h.wav", seed=4)
    (folder / "._b.wav").write_bytes(b"macOS metadata, not audio")
    (folder / "notes.txt").write_text("not audio")
    return folder


def test_audio_files_expands_directories_sorted(audio_dir):
    top = audio_dir / "a.flac", audio_dir / "b.wav"
    assert audio_files([audio_dir]) == list(top)
    assert audio_files([audio_dir], recursive=True) == [*top, audio_dir / "sub" / "c.wav"]
    # Files stay as given, in the given order, and are checked only when they are classified.
    assert audio_files(["x.mp3", audio_dir / "sub"]) == ["x.mp3", audio_dir / "sub" / "c.wav"]
    assert {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus", ".aac", ".webm"} <= AUDIO_SUFFIXES


def test_predict_classifies_the_files_of_a_directory(tiny_model_dir, audio_dir, capsys):
    assert cli.main(["predict", str(tiny_model_dir), str(audio_dir), "--top-k", "1"]) == 0
    printed = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert printed == [str(audio_dir / "a.flac"), str(audio_dir / "b.wav")]
    assert cli.main(["predict", str(tiny_model_dir), str(audio_dir), "--recursive", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["file"] for row in rows] == [str(audio_dir / n) for n in ("a.flac", "b.wav", "sub/c.wav")]


@pytest.mark.parametrize(
    ("layout", "recursive", "where"),
    [
        ("empty", False, "in it;"),
        ("text_only", False, "in it;"),
        ("nested", False, r"at its top level \(--recursive also searches its subdirectories\)"),
        ("text_only", True, "in it or its subdirectories"),
    ],
)
def test_a_directory_without_audio_is_a_clear_error(tmp_path, layout, recursive, where):
    folder = tmp_path / "folder"
    folder.mkdir()
    if layout == "text_only":
        (folder / "readme.txt").write_text("no audio here")
    elif layout == "nested":
        _noise(folder / "deeper" / "x.wav")
    with pytest.raises(ValueError, match=rf"folder is a directory with no audio files {where}.*\.wav"):
        audio_files([folder], recursive=recursive)


def test_cli_predict_on_an_empty_directory(tiny_model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("predict", tiny_model_dir, tmp_path / "empty")
    line = assert_one_error_line(result, "predict")
    assert f"{tmp_path / 'empty'} is a directory with no audio files in it" in line
    assert "no such file" not in line


# --- Model locations ------------------------------------------------------------------------------------------


def _not_a_model(tmp_path: Path, kind: str) -> tuple[Path | str, str]:
    """A model argument that is no model, and the reason the error must give."""
    if kind == "missing_path":
        return tmp_path / "no" / "model", "no such directory"
    if kind == "missing_hub_id":
        return "someone/no-such-model", "no such directory, and as a Hub id it could not be loaded: the Hub"
    if kind == "missing_pth":
        return "missing.pth", "no such file"
    if kind == "pth_file":
        path = save_state(tmp_path / "orig.pth", original_state())
        return path, "it is a file, expected a model directory or Hub id (vocalsound-hf convert-checkpoint"
    folder = tmp_path / kind
    folder.mkdir()
    if kind == "audio_dir":
        _noise(folder / "a.wav")
        return (
            folder,
            "the directory is not a saved model: it has no config.json, model.safetensors, preprocessor_config.json",
        )
    # Another model type with every file in place: refused before any weight is read.
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "preprocessor_config.json").write_text("{}")
    return folder, "it holds a 'bert' model, expected 'audio-spectrogram-transformer'"


MODEL_KINDS = ["missing_path", "missing_hub_id", "missing_pth", "pth_file", "audio_dir", "bert_dir"]


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_a_model_that_is_not_there_is_named(tmp_path, kind):
    model, reason = _not_a_model(tmp_path, kind)
    with pytest.raises(ModelLoadError) as caught:
        AudioClassifier.from_pretrained(model)
    message = str(caught.value)
    assert message.startswith(f"cannot load the model {str(model)!r}: {reason}")
    assert "Repo id must be" not in message and "\n" not in message
    assert isinstance(caught.value, OSError)


def test_missing_location_tells_paths_from_hub_ids(tmp_path):
    assert missing_location(tmp_path) is None
    assert missing_location("MIT/ast-finetuned-audioset-10-10-0.4593") is None
    assert missing_location(tmp_path / "absent") == "no such directory"
    assert missing_location("./absent/dir/deeper") == "no such directory"
    assert missing_location("weights.PTH") == "no such file"


@pytest.mark.parametrize("kind", ["missing_path", "missing_hub_id"])
def test_cli_predict_with_a_missing_model(tmp_path, kind):
    model, reason = _not_a_model(tmp_path, kind)
    clip = _noise(tmp_path / "clip.wav")
    line = assert_one_error_line(run_cli("predict", model, clip), "predict")
    assert line.split("error: ", 1)[1].startswith(f"cannot load the model {str(model)!r}: {reason}")
    assert "Repo id must be" not in line


@pytest.mark.parametrize("flag", ["--audioset", "--imagenet"])
@pytest.mark.parametrize("source", ["missing.pth", "/no/such/dir"])
def test_init_model_with_a_missing_pretrained_source(tmp_path, capsys, flag, source):
    out = tmp_path / "model"
    assert cli.main(["init-model", str(out), "--model-size", "tiny224", flag, source]) == 2
    err = capsys.readouterr().err.strip()
    reason = "no such file" if source.endswith(".pth") else "no such directory"
    assert err.endswith(f"{source}: {reason}"), err
    assert "Repo id must be" not in err and "couldn't connect" not in err
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["missing_hub_id", "pth_file"])
def test_space_exits_with_one_line_for_a_model_that_is_not_there(tmp_path, kind):
    model, reason = _not_a_model(tmp_path, kind)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    result = subprocess.run(
        [sys.executable, str(APP)],
        cwd=REPO_ROOT,
        env={**env, "VOCALSOUND_MODEL": str(model)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip().splitlines()[-1].startswith(f"cannot load the model {str(model)!r}: {reason}")
    )


def test_hub_failure_online_says_unreachable_or_wrong_id(monkeypatch):
    from vocalsound_hf.models import checkpoints

    monkeypatch.setattr(checkpoints.hub_constants, "HF_HUB_OFFLINE", False)
    reason = checkpoints.hub_failure(OSError("x is not a valid model identifier\nmore detail"))
    assert reason == (
        "no such directory, and as a Hub id it could not be loaded: the Hub is unreachable or the id is wrong "
        "(OSError: x is not a valid model identifier)"
    )


def test_build_ast_names_a_missing_audioset_checkpoint_without_the_hubs_wording(tmp_path):
    from vocalsound_hf.models.build import build_ast

    with pytest.raises(FileNotFoundError, match=r"audioset_pretrain .*missing.pth: no such file$"):
        build_ast(audioset_pretrain=str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match=r"audioset_pretrain .*nowhere: no such directory") as caught:
        build_ast(audioset_pretrain=str(tmp_path / "no" / "nowhere"))
    assert "Repo id must be" not in str(caught.value)
