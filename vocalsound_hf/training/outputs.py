"""The output folder of a run: refused when it holds something else, checkpoints checked before a resume, the
final model saved atomically, and the results and model card written next to it."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zipfile
from dataclasses import asdict
from pathlib import Path

from safetensors import SafetensorError, safe_open
from transformers import Trainer
from transformers.trainer import FSDP_MODEL_NAME, OPTIMIZER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from ..fileio import PARTIAL_SUFFIX
from .model_card import subgroup_table, write_model_card
from .results import write_results

logger = logging.getLogger(__name__)

# What a finished run leaves in its output_dir beside the checkpoints: the model a user may have published.
FINISHED_RUN_FILES = ("model.safetensors", "preprocessor_config.json", "results.json", "README.md")
# TrainingArguments shown in the model card's recipe.
RECIPE_TRAINING_KEYS = (
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
    "lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2", "seed", "bf16", "fp16",
)  # fmt: skip
# The names get_last_checkpoint takes for checkpoints (trainer_utils._re_checkpoint).
_CHECKPOINT = re.compile(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)")


def check_output_dir(output_dir: str, resume: bool) -> None:
    """Refuse to train into a non-empty directory unless resuming the unfinished run it holds.

    Checked before training. A finished run is not resumed: that would retrain the model it holds and
    rewrite its preprocessing, card and results behind the user's back.
    """
    path = Path(output_dir)
    if not path.exists():
        return
    if not path.is_dir():
        raise ValueError(f"--output_dir {path} exists and is not a directory")
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
            f"--output_dir {path} is not empty (it holds {shown}): choose a new directory, or pass "
            "--resume_from_checkpoint true to continue the run it holds"
        )


def _json_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"{path.name} is missing"
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        return f"{path.name} is not valid JSON ({error})"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """Whether every tensor of a safetensors file lies inside it: a write cut short leaves the header whole
    and the data short, which safetensors reports only as "incomplete metadata"."""
    if not path.is_file():
        return f"{path.name} is missing"
    size = path.stat().st_size
    with path.open("rb") as file:
        prefix = file.read(8)
        header_size = int.from_bytes(prefix, "little")
        if len(prefix) < 8 or 8 + header_size > size:
            return f"{path.name} is truncated ({size:,} bytes, shorter than its header)"
        header = file.read(header_size)
    try:
        ends = [t["data_offsets"][1] for k, t in json.loads(header).items() if k != "__metadata__"]
        needed = 8 + header_size + max(ends, default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return f"{path.name} has an unreadable header"
    if needed > size:
        return f"{path.name} is truncated ({size:,} of {needed:,} bytes)"
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError) as error:
        return f"{path.name} is unreadable ({error})"
    return None


def _torch_file_problem(path: Path) -> str | None:
    """torch.save writes a zip whose directory is at the end, so a file cut short has none."""
    if not path.is_file():
        return f"{path.name} is missing"
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (zipfile.BadZipFile, OSError):
        return f"{path.name} is truncated or not a torch.save file ({path.stat().st_size:,} bytes)"
    return None


def weights_problem(checkpoint: str | os.PathLike) -> str | None:
    """What is wrong with a checkpoint's weights (model.safetensors, or the shards of its index), if anything."""
    folder = Path(checkpoint)
    index = folder / SAFE_WEIGHTS_INDEX_NAME
    if not index.is_file():
        return _safetensors_problem(folder / SAFE_WEIGHTS_NAME)
    problem = _json_problem(index)
    if problem:
        return problem
    weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    if not isinstance(weight_map, dict):
        return f"{index.name} has no weight_map"
    shards = sorted(set(weight_map.values()))
    return next(filter(None, (_safetensors_problem(folder / shard) for shard in shards)), None)


def checkpoint_problem(checkpoint: str | os.PathLike) -> str | None:
    """What keeps the Trainer from resuming from ``checkpoint`` exactly, or None when it is complete.

    Complete means what a resume reads: the weights and config (loaded strictly), trainer_state.json (the
    step to continue from), the optimizer and scheduler states and the RNG state. The Trainer itself skips a
    missing optimizer, scheduler or RNG file with an info line and resumes differently from the run it
    continues; an unreadable file it meets only after building the model and loading the data.
    """
    folder = Path(checkpoint)
    if not folder.is_dir():
        return "no such folder"
    # DeepSpeed (global_step*/) and FSDP (pytorch_model_fsdp*) keep the weights and optimizer in their own
    # formats, which their own loaders check.
    own_format = any(folder.glob("global_step*")) or any(folder.glob(f"{FSDP_MODEL_NAME}*"))
    problems = [_json_problem(folder / TRAINER_STATE_NAME), _json_problem(folder / CONFIG_NAME)]
    if (folder / "preprocessor_config.json").exists():
        problems.append(_json_problem(folder / "preprocessor_config.json"))
    if not own_format:
        problems.append(weights_problem(folder))
        problems += [_torch_file_problem(folder / name) for name in (OPTIMIZER_NAME, SCHEDULER_NAME)]
    # One rng_state.pth per run, or rng_state_<rank>.pth per process of a distributed one.
    rng_states = sorted(folder.glob("rng_state*.pth")) or [folder / "rng_state.pth"]
    problems += [_torch_file_problem(path) for path in rng_states]
    problems = [problem for problem in problems if problem]
    return ", ".join(problems) or None


def _checkpoints_newest_first(output_dir: str | os.PathLike) -> list[Path]:
    if not Path(output_dir).is_dir():
        return []
    found = [
        (int(match.group(1)), path)
        for path in Path(output_dir).iterdir()
        if (match := _CHECKPOINT.fullmatch(path.name)) and path.is_dir()
    ]
    return [path for _, path in sorted(found, reverse=True)]


def resumable_checkpoint(output_dir: str | os.PathLike) -> str:
    """The newest complete checkpoint in ``output_dir``; newer, incomplete ones are named in one warning.

    A skipped checkpoint is left as it is: the resumed run saves the same step into it again. With no
    complete checkpoint, ``ValueError`` lists each checkpoint and what is wrong with it.
    """
    skipped = []
    for folder in _checkpoints_newest_first(output_dir):
        problem = checkpoint_problem(folder)
        if problem is None:
            if skipped:
                logger.warning(
                    "resuming from %s, the newest complete checkpoint in %s; skipping %s (the run saves "
                    "those steps again)",
                    folder.name,
                    output_dir,
                    "; ".join(skipped),
                )
            return str(folder)
        skipped.append(f"{folder.name}: {problem}")
    raise ValueError(
        f"--resume_from_checkpoint: no complete checkpoint in {output_dir} to resume from: "
        + ("; ".join(skipped) if skipped else "it holds no checkpoint-* folder")
    )


def resume_checkpoint(output_dir: str, resume: bool | str | None) -> str | None:
    """The checkpoint folder a run resumes from: ``resume`` True, the newest complete one in ``output_dir``;
    a path, that checkpoint, which must be complete (``ValueError`` names what is wrong); else None."""
    if not resume:
        return None
    if resume is True:
        return resumable_checkpoint(output_dir)
    problem = checkpoint_problem(resume)
    if problem:
        raise ValueError(f"--resume_from_checkpoint {resume}: cannot resume from it: {problem}")
    return str(resume)


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


def write_outputs(results, model_args, aug_args, training_args, source: str, base_model: str | None) -> None:
    """results.json, the result tables and (after training) the model card; main process only."""
    write_results(training_args.output_dir, results)
    if training_args.do_train:
        write_model_card(
            training_args.output_dir,
            results,
            model_name=training_args.hub_model_id or f"ast-vocalsound-{model_args.model_size}",
            dataset_id=None if Path(source).exists() else source,  # a local folder is no Hub id
            base_model=base_model,
            recipe={
                **{k: v for k, v in asdict(model_args).items() if v is not None},
                **asdict(aug_args),
                **{k: getattr(training_args, k) for k in RECIPE_TRAINING_KEYS},
                "world_size": training_args.world_size,
            },
        )
    if "test_accuracy" in results:
        selected = results.get("selected_model", model_args.model_name_or_path)
        logger.info("accuracy %% of %s by subgroup:\n%s", selected, subgroup_table(results))
    logger.info("wrote the results to %s", training_args.output_dir)
