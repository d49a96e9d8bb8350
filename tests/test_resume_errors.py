"""Resuming past a checkpoint cut short, and train_hf.py's one-line report of the user's mistakes.

A run that dies while saving leaves its newest checkpoint incomplete; ``--resume_from_checkpoint true``
continues from the newest complete one and names the one it skips. Mistakes in the arguments, the data or
the output folder end ``python train_hf.py`` with one line and exit status 2; ``main`` still raises them.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_training import REPO_ROOT, SYNTH_NORM, TINY_MODEL, _env, _load_script, _write_dataset

from vocalsound_hf.training.outputs import checkpoint_problem
from vocalsound_hf.training.trainer import VocalSoundTrainer

# 12 training clips in batches of 4: three steps an epoch, so the epochs end at checkpoint-3, -6 and -9.
SIZES = {"train": 12, "validation": 6, "test": 6}
RUN = [*TINY_MODEL, *SYNTH_NORM, "--do_train", "--do_eval", "--num_train_epochs", "3",
       "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--seed", "3",
       "--report_to", "none", "--disable_tqdm", "true"]  # fmt: skip


class Interrupted(Exception):
    """Raised from on_save: the run stops as a killed one would, with its checkpoints written and no model."""


@pytest.fixture(scope="module")
def script():
    return _load_script()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("resume") / "data", SIZES)


@pytest.fixture(scope="module")
def interrupted_run(script, dataset, tmp_path_factory) -> Path:
    """The output folder of a 3-epoch run stopped right after its second checkpoint was saved."""
    out = tmp_path_factory.mktemp("interrupted") / "run"

    class StopOnSecondSave(script.OneLineLogCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 6:
                raise Interrupted

    original, script.OneLineLogCallback = script.OneLineLogCallback, StopOnSecondSave
    try:
        with pytest.raises(Interrupted):
            script.main(["--dataset_name", str(dataset), "--output_dir", str(out), *RUN])
    finally:
        script.OneLineLogCallback = original
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-3", "checkpoint-6"]
    # What the Trainer writes is what checkpoint_problem calls complete.
    assert (
        checkpoint_problem(out / "checkpoint-3") is None and checkpoint_problem(out / "checkpoint-6") is None
    )
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def _truncate(path: Path, size: int | None = None) -> None:
    """Cut a file as a write that never finished leaves it: at half its size, or at ``size`` bytes."""
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2 if size is None else size)


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


# --- which checkpoints are complete ---------------------------------------------------------------------


@pytest.fixture
def checkpoint(tiny_model_dir, tmp_path) -> Path:
    """A checkpoint folder holding the files the Trainer writes (small stand-ins for the states)."""
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "checkpoint-10"))
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.save({"state": torch.zeros(256)}, folder / name)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 10, "epoch": 1.0}))
    return folder


def _cut_half(folder: Path, name: str) -> None:
    _truncate(folder / name)


def _cut_in_header(folder: Path, name: str) -> None:
    _truncate(folder / name, 5)


def _remove(folder: Path, name: str) -> None:
    (folder / name).unlink()


@pytest.mark.parametrize(
    ("name", "damage", "problem"),
    [
        ("model.safetensors", _cut_half, r"model.safetensors is truncated \([\d,]+ of [\d,]+ bytes\)"),
        (
            "model.safetensors",
            _cut_in_header,
            r"model.safetensors is truncated \(5 bytes, shorter than its header\)",
        ),
        ("model.safetensors", _remove, r"model.safetensors is missing"),
        ("optimizer.pt", _cut_half, r"optimizer.pt is truncated or not a torch.save file \([\d,]+ bytes\)"),
        ("optimizer.pt", _remove, r"optimizer.pt is missing"),
        ("scheduler.pt", _remove, r"scheduler.pt is missing"),
        ("rng_state.pth", _cut_half, r"rng_state.pth is truncated or not a torch.save file \([\d,]+ bytes\)"),
        ("trainer_state.json", _cut_half, r"trainer_state.json is not valid JSON \(.+\)"),
        ("config.json", _remove, r"config.json is missing"),
        ("preprocessor_config.json", _cut_half, r"preprocessor_config.json is not valid JSON \(.+\)"),
    ],
)
def test_each_incomplete_file_is_named(checkpoint, name, damage, problem):
    assert checkpoint_problem(checkpoint) is None
    damage(checkpoint, name)
    assert re.fullmatch(problem, checkpoint_problem(checkpoint))


def test_a_distributed_runs_rng_files_count_and_a_missing_folder_is_named(checkpoint, tmp_path):
    (checkpoint / "rng_state.pth").rename(checkpoint / "rng_state_0.pth")
    shutil.copy(checkpoint / "rng_state_0.pth", checkpoint / "rng_state_1.pth")
    assert checkpoint_problem(checkpoint) is None
    _truncate(checkpoint / "rng_state_1.pth")
    assert checkpoint_problem(checkpoint).startswith("rng_state_1.pth is truncated")
    assert checkpoint_problem(tmp_path / "checkpoint-99") == "no such folder"


def test_a_sharded_checkpoint_names_its_broken_shard(checkpoint):
    from transformers import ASTForAudioClassification

    model = ASTForAudioClassification.from_pretrained(checkpoint)
    (checkpoint / "model.safetensors").unlink()
    model.save_pretrained(checkpoint, max_shard_size="200KB")
    shards = sorted(checkpoint.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and checkpoint_problem(checkpoint) is None
    _truncate(shards[-1])
    assert re.fullmatch(
        rf"{shards[-1].name} is truncated \([\d,]+ of [\d,]+ bytes\)", checkpoint_problem(checkpoint)
    )


def test_the_newest_complete_checkpoint_is_chosen_and_the_skipped_ones_named(checkpoint, caplog):
    from vocalsound_hf.training.outputs import resumable_checkpoint

    out = checkpoint.parent
    for step in (20, 100):  # 100 sorts after 20 by step, before it by name
        shutil.copytree(checkpoint, out / f"checkpoint-{step}")
    _truncate(out / "checkpoint-100" / "model.safetensors")
    (out / "checkpoint-20" / "scheduler.pt").unlink()
    with caplog.at_level(logging.WARNING, logger="vocalsound_hf.training.outputs"):
        assert resumable_checkpoint(out) == str(checkpoint)
    assert [r.getMessage() for r in caplog.records] == [
        f"resuming from checkpoint-10, the newest complete checkpoint in {out}; skipping checkpoint-100: "
        f"{checkpoint_problem(out / 'checkpoint-100')}; checkpoint-20: scheduler.pt is missing (the run saves "
        "those steps again)"
    ]
    (checkpoint / "rng_state.pth").unlink()
    with pytest.raises(ValueError, match=r"checkpoint-100: model.safetensors is truncated .*; checkpoint-20: "
                       r"scheduler.pt is missing; checkpoint-10: rng_state.pth is missing$"):  # fmt: skip
        resumable_checkpoint(out)


def test_the_trainer_names_the_weights_file_it_cannot_load(checkpoint, tmp_path):
    """Through the Trainer's own API too, a weights file cut short is an error naming the checkpoint and
    the file, not safetensors' bare "incomplete metadata"."""
    from safetensors import SafetensorError
    from test_trainer import _trainer
    from transformers import ASTForAudioClassification, Trainer

    model = ASTForAudioClassification.from_pretrained(checkpoint)
    _truncate(checkpoint / "model.safetensors")
    with pytest.raises(SafetensorError, match="incomplete metadata"):
        Trainer._load_from_checkpoint(_trainer(model, tmp_path), str(checkpoint))
    expected = rf"cannot resume from {re.escape(str(checkpoint))}: model.safetensors is truncated"
    with pytest.raises(ValueError, match=expected):
        _trainer(model, tmp_path)._load_from_checkpoint(str(checkpoint))


# --- resuming ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_skips_a_truncated_last_checkpoint_and_finishes(
    script, dataset, interrupted_run, tmp_path, monkeypatch, caplog
):
    out = _copy(interrupted_run, tmp_path)
    _truncate(out / "checkpoint-6" / "model.safetensors")
    loaded = []
    load = VocalSoundTrainer._load_from_checkpoint

    def spy(self, checkpoint, model=None):
        loaded.append(checkpoint)
        return load(self, checkpoint, model)

    monkeypatch.setattr(VocalSoundTrainer, "_load_from_checkpoint", spy)
    argv = [
        "--dataset_name",
        str(dataset),
        "--output_dir",
        str(out),
        "--resume_from_checkpoint",
        "true",
        *RUN,
    ]
    with caplog.at_level(logging.WARNING, logger="vocalsound_hf.training.outputs"):
        results = script.main(argv)
    assert loaded == [str(out / "checkpoint-3")]
    skipped = [r.getMessage() for r in caplog.records if r.name == "vocalsound_hf.training.outputs"]
    assert len(skipped) == 1
    assert re.fullmatch(
        rf"resuming from checkpoint-3, the newest complete checkpoint in {re.escape(str(out))}; skipping "
        r"checkpoint-6: model.safetensors is truncated \([\d,]+ of [\d,]+ bytes\) \(the run saves those steps again\)",
        skipped[0],
    )
    # The run went on to the end: epochs 2 and 3 saved again, complete, and the final model and results.
    state = json.loads((out / "checkpoint-9" / "trainer_state.json").read_text())
    assert state["global_step"] == 9 and state["epoch"] == 3.0
    assert (
        checkpoint_problem(out / "checkpoint-6") is None and checkpoint_problem(out / "checkpoint-9") is None
    )
    assert (out / "model.safetensors").is_file() and "test_accuracy" in results
    assert json.loads((out / "results.json").read_text())["test_accuracy"] == results["test_accuracy"]


@pytest.mark.slow
def test_no_complete_checkpoint_stops_with_each_ones_problem(script, dataset, interrupted_run, tmp_path):
    out = _copy(interrupted_run, tmp_path)
    (out / "checkpoint-3" / "optimizer.pt").unlink()
    _truncate(out / "checkpoint-6" / "trainer_state.json")
    before = _snapshot(out)
    common = ["--dataset_name", str(dataset), "--output_dir", str(out), *RUN]
    with pytest.raises(ValueError) as error:
        script.main([*common, "--resume_from_checkpoint", "true"])
    assert re.fullmatch(
        rf"--resume_from_checkpoint: no complete checkpoint in {re.escape(str(out))} to resume from: "
        r"checkpoint-6: trainer_state.json is not valid JSON \(.+\); checkpoint-3: optimizer.pt is missing",
        str(error.value),
    )
    # An explicitly named checkpoint is not replaced by another: it is resumed or refused.
    with pytest.raises(ValueError) as error:
        script.main([*common, "--resume_from_checkpoint", str(out / "checkpoint-6")])
    assert str(error.value).startswith(
        f"--resume_from_checkpoint {out / 'checkpoint-6'}: cannot resume from it: trainer_state.json is not valid"
    )
    assert _snapshot(out) == before


# --- one line for the user's mistakes ---------------------------------------------------------------------


def _run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO_ROOT / "train_hf.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env or _env(), timeout=300)


def _broken_checkpoint(out: Path) -> None:
    """An output folder whose only checkpoint has a weights file cut off after 10 bytes and nothing else."""
    (out / "checkpoint-4").mkdir(parents=True)
    (out / "checkpoint-4" / "model.safetensors").write_bytes(b"\x08" + bytes(9))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "arguments", "message"),
    [
        (
            "occupied output dir",
            ["--do_train"],
            r"--output_dir {out} is not empty \(it holds notes.txt\): choose a new directory, or pass "
            r"--resume_from_checkpoint true to continue the run it holds",
        ),
        (
            "wa_start past the last epoch",
            ["--do_train", "--do_eval", "--wa_start", "3", "--num_train_epochs", "2"],
            r"--wa_start 3 / --wa_end 2: expected 1 <= wa_start <= wa_end <= num_train_epochs \(2.0\)",
        ),
        (
            "dataset folder that does not exist",
            ["--do_eval", "--dataset_name", "{tmp}/no-such-data"],
            r"--dataset_name {tmp}/no-such-data: no such file or folder \(expected a Hub dataset id or an "
            r"exported dataset folder\)",
        ),
        (
            "unknown recipe key",
            ["{recipe}", "--do_train"],
            r"recipe {recipe}: unknown argument 'learning_rte' \(did you mean 'learning_rate'\?\)",
        ),
        (
            "unknown argument",
            ["--do_train", "--lerning_rate", "1e-3"],
            r"unknown argument '--lerning_rate' \(did you mean '--learning_rate'\?\)",
        ),
        (
            "no complete checkpoint",
            ["--do_train", "--resume_from_checkpoint", "true"],
            r"--resume_from_checkpoint: no complete checkpoint in {out} to resume from: checkpoint-4: "
            r"trainer_state.json is missing, config.json is missing, model.safetensors is truncated \(10 bytes, "
            r"shorter than its header\), optimizer.pt is missing, scheduler.pt is missing, rng_state.pth is missing",
        ),
    ],
)
def test_a_user_error_is_one_line_and_exit_status_2(dataset, tmp_path, case, arguments, message):
    out, recipe = tmp_path / "out", tmp_path / "bad.yaml"
    recipe.write_text("learning_rte: 1e-4\n")
    if case == "occupied output dir":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    if case == "no complete checkpoint":
        _broken_checkpoint(out)
    before = _snapshot(out) if out.exists() else None
    values = {"out": str(out), "tmp": str(tmp_path), "recipe": str(recipe)}
    arguments = [a.format(**values) for a in arguments]
    first = arguments[:1] if arguments[0].endswith(".yaml") else []  # a recipe comes first
    # The case's own arguments come last, and argparse keeps the last value of an option given twice.
    run = _run_script(*first, "--dataset_name", str(dataset), "--output_dir", str(out), *TINY_MODEL,
                      *SYNTH_NORM, "--report_to", "none", *arguments[len(first):])  # fmt: skip
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    pattern = message.format(**{k: re.escape(v) for k, v in values.items()})
    assert len(errors) == 1 and re.fullmatch(rf"train_hf.py: error: {pattern}", errors[0]), errors
    assert run.stderr.rstrip("\n").splitlines()[-1] == errors[0]
    # Nothing was written: the output folder is as it was, or still absent.
    assert (_snapshot(out) if out.exists() else None) == before


def _cli(script, monkeypatch, capsys, argv: list[str]) -> tuple[int, str]:
    """``train_hf.py``'s command-line entry, in process: its exit status and what it printed on stderr."""
    monkeypatch.setattr(sys, "argv", ["train_hf.py", *argv])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        script.cli(argv)
    return exit_.value.code, capsys.readouterr().err


def test_the_command_line_reports_a_user_error_in_one_line(script, dataset, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    common = ["--dataset_name", str(dataset), *TINY_MODEL, *SYNTH_NORM, "--report_to", "none", "--do_train"]
    status, err = _cli(script, monkeypatch, capsys, [*common, "--output_dir", str(out)])
    assert status == 2 and err == (
        f"train_hf.py: error: --output_dir {out} is not empty (it holds notes.txt): choose a new directory, "
        "or pass --resume_from_checkpoint true to continue the run it holds\n"
    )
    status, err = _cli(
        script, monkeypatch, capsys, [*common, "--output_dir", str(tmp_path / "o"), "--lerning_rate", "1"]
    )
    assert (
        status == 2
        and err == "train_hf.py: error: unknown argument '--lerning_rate' (did you mean '--learning_rate'?)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and _snapshot(out) == {"notes.txt": 4}


def test_only_the_first_process_of_a_node_prints_the_error(script, tmp_path, monkeypatch, capsys):
    """Under accelerate launch every process meets the same mistake; one line is printed per node."""
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("learning_rte: 1e-4\n")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert _cli(script, monkeypatch, capsys, [str(recipe)]) == (2, "")
    monkeypatch.setenv("LOCAL_RANK", "0")
    status, err = _cli(script, monkeypatch, capsys, [str(recipe)])
    assert status == 2 and err.startswith(
        f"train_hf.py: error: recipe {recipe}: unknown argument 'learning_rte'"
    )


def test_an_error_while_training_is_no_user_error(script, dataset, tmp_path, monkeypatch, capsys):
    """A ValueError from the training loop is a bug: it is raised as it is, for its traceback."""

    def train(self, **kwargs):
        raise ValueError("a bug in the training loop")

    monkeypatch.setattr(VocalSoundTrainer, "train", train)
    monkeypatch.setattr(sys, "argv", ["train_hf.py"])
    with pytest.raises(ValueError, match="a bug in the training loop"):
        script.cli(["--dataset_name", str(dataset), "--output_dir", str(tmp_path / "out"), *RUN])
    assert "error:" not in capsys.readouterr().err
