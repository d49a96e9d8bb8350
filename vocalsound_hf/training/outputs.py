"""The output folder of a run: refused when it holds something else, and the final model saved atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from transformers import Trainer
from transformers.trainer_utils import get_last_checkpoint

from ..fileio import PARTIAL_SUFFIX

# What a finished run leaves in its output_dir beside the checkpoints: the model a user may have published.
FINISHED_RUN_FILES = ("model.safetensors", "preprocessor_config.json", "results.json", "README.md")


def check_output_dir(output_dir: str, resume: bool) -> None:
    """Refuse to train into a non-empty directory unless resuming the unfinished run it holds.

    Checked before training. A finished run is not resumed: that would retrain the model it holds and
    rewrite its preprocessing, card and results behind the user's back.
    """
    path = Path(output_dir)
    if not path.exists():
        return
    if not path.is_dir():
        raise ValueError(f"output_dir {path} exists and is not a directory")
    entries = sorted(p.name for p in path.iterdir())
    if resume:
        if get_last_checkpoint(str(path)) is None:
            raise ValueError(
                f"--resume_from_checkpoint: output_dir {path} holds no checkpoint-* folder to resume"
            )
        finished = [name for name in FINISHED_RUN_FILES if name in entries]
        if finished:
            raise ValueError(
                f"--resume_from_checkpoint: output_dir {path} holds a finished model ({', '.join(finished)}), "
                "which resuming would overwrite; to train it further, pass --model_name_or_path "
                f"{path} with a new --output_dir"
            )
        return
    if entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ValueError(
            f"output_dir {path} is not empty (it holds {shown}): choose a new directory, or pass "
            "--resume_from_checkpoint true to continue the run it holds"
        )


def resume_checkpoint(output_dir: str, resume: bool | str | None) -> str | None:
    """The checkpoint a run resumes from (``resume`` True: the last one in ``output_dir``), if it has a
    feature extractor (the Trainer saves it with each checkpoint); otherwise None."""
    if not resume:
        return None
    checkpoint = get_last_checkpoint(output_dir) if resume is True else str(resume)
    if checkpoint and (Path(checkpoint) / "preprocessor_config.json").is_file():
        return checkpoint
    return None


def save_model(trainer: Trainer, output_dir: str | os.PathLike) -> None:
    """Save the trainer's model and feature extractor into ``output_dir`` (next to its checkpoints), atomically.

    Every rank takes part (DeepSpeed and FSDP gather the weights); the main process writes into a staging
    folder inside ``output_dir`` and renames each file into place, so no reader sees half a file.
    """
    output_dir = Path(output_dir)
    # The same name on every rank, unlike fileio's random temporary names, since they all save into it; a
    # staging folder left by a killed run is removed first.
    staging = output_dir / f".final{PARTIAL_SUFFIX}"
    if trainer.is_world_process_zero() and staging.exists():
        shutil.rmtree(staging)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging))
    if trainer.is_world_process_zero():
        for item in staging.iterdir():
            os.replace(item, output_dir / item.name)
        staging.rmdir()
    trainer.accelerator.wait_for_everyone()
