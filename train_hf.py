#!/usr/bin/env python
"""Fine-tune (or evaluate) the Audio Spectrogram Transformer on VocalSound with the transformers Trainer.

    accelerate launch train_hf.py recipes/vocalsound_audioset.yaml --output_dir outputs/ast --per_device_train_batch_size 12
    python train_hf.py --dataset_name DIR --model_name_or_path outputs/ast --do_eval --output_dir outputs/eval

The first argument may be a YAML or JSON recipe; arguments after it override the recipe's values. Every
``TrainingArguments`` option is accepted (``--output_dir``, batch sizes, ``--learning_rate``, ``--bf16``,
``--gradient_accumulation_steps``, ``--push_to_hub``, ...).

A mistake in the arguments, the data or the output folder is reported in one line, ``train_hf.py: error: ...``,
with exit status 2 (as argparse's own errors), before any training step; an error while training keeps its
traceback.
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import transformers
from transformers import (
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    HfArgumentParser,
    TrainingArguments,
)
from transformers.trainer_utils import set_seed

from vocalsound_hf.data.stats import compute_norm_stats, read_norm_stats
from vocalsound_hf.features import make_feature_extractor
from vocalsound_hf.metrics import load_metric
from vocalsound_hf.models.build import build_ast
from vocalsound_hf.models.checkpoints import missing_location
from vocalsound_hf.models.presets import HEADS, INITS, MODEL_SIZES
from vocalsound_hf.release import SPLIT_SOURCES
from vocalsound_hf.training.averaging import evaluate_weight_average
from vocalsound_hf.training.collator import VocalSoundCollator, cache_fbank
from vocalsound_hf.training.evaluation import SplitMetrics, evaluate_split, predict_split
from vocalsound_hf.training.outputs import check_output_dir, resume_checkpoint, save_model, write_outputs
from vocalsound_hf.training.pipeline import FeaturePipeline
from vocalsound_hf.training.recipes import RECIPE_SUFFIXES, recipe_to_argv
from vocalsound_hf.training.results import PREDICTIONS_FILE, write_predictions
from vocalsound_hf.training.splits import check_labels, clip_metadata, load_splits
from vocalsound_hf.training.trainer import OneLineLogCallback, VocalSoundTrainer

logger = logging.getLogger("train_hf")


def arg(default, text: str, **metadata):
    """A field of an arguments dataclass: its default, its ``--help`` text and any other metadata (choices)."""
    return field(default=default, metadata={"help": text, **metadata})


@dataclass
class ModelArguments:
    """Which AST to build (or load) and how to initialise it."""

    model_size: str = arg("base384", "DeiT preset", choices=list(MODEL_SIZES))
    init: str = arg("scratch", "initial weights: random, ImageNet DeiT, or AudioSet AST", choices=list(INITS))
    init_checkpoint: str | None = arg(
        None,
        "weights for --init imagenet (a distilled DeiT: Hub id, folder or timm file, e.g. "
        "facebook/deit-base-distilled-patch16-384) or audioset (an AST: Hub id, folder or original .pth, e.g. "
        "MIT/ast-finetuned-audioset-10-10-0.4593)",
    )
    head: str = arg(
        "new", "classifier head: new, or the AudioSet head's six VocalSound rows", choices=list(HEADS)
    )
    model_name_or_path: str | None = arg(
        None,
        "a trained VocalSound AST (folder or Hub id) to evaluate or fine-tune further, instead of --init",
    )
    input_tdim: int = arg(512, "frames per clip (10 ms each); clips are padded or cut")
    fstride: int = arg(10, "patch stride over frequency (16 = no overlap)")
    tstride: int = arg(10, "patch stride over time (16 = no overlap)")
    num_hidden_layers: int | None = arg(None, "override the preset's depth")
    hidden_size: int | None = arg(None, "override the preset's width")
    num_attention_heads: int | None = arg(None, "override the preset's heads")
    intermediate_size: int | None = arg(None, "override the preset's MLP width")
    wa_start: int | None = arg(
        None, "average the weights of epochs wa_start..wa_end (1-based) and evaluate them too"
    )
    wa_end: int | None = arg(None, "last epoch of weight averaging (default: the last)")

    def architecture_overrides(self) -> dict[str, int]:
        names = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class DataArguments:
    """Where the data comes from and how its features are made."""

    data_dir: str | None = arg(None, "a raw VocalSound release (folder or zip)")
    dataset_name: str | None = arg(None, "a Hub dataset id or an exported dataset folder")
    dataset_config_name: str | None = arg(None, "dataset config (16k or 44k)")
    split_source: str = arg(
        "datafiles",
        "with --data_dir: the official split files or every wav by speaker",
        choices=list(SPLIT_SOURCES),
    )
    norm_mean: float | None = arg(None, "fbank mean (default: the dataset card's, else computed)")
    norm_std: float | None = arg(None, "fbank std (default: the dataset card's, else computed)")
    cache_features: bool = arg(
        False, "compute fbanks once with datasets.map instead of per batch (no --mixup)"
    )


@dataclass
class AugmentationArguments:
    """The original recipe's training augmentations (off for validation and test)."""

    freqm: int = arg(0, "SpecAugment frequency mask width (48 in the paper)")
    timem: int = arg(0, "SpecAugment time mask width (192 in the paper)")
    mixup: float = arg(0.0, "probability of waveform mixup with Beta(10, 10) (soft targets)")
    roll: bool = arg(False, "random circular time roll of the fbank")
    noise: bool = arg(False, "the original's uniform fbank noise")


# What this script needs from TrainingArguments unless the user says otherwise: evaluate and save every
# epoch, keep the best validation accuracy, log each epoch, and keep the audio column for the collator.
TRAINING_DEFAULTS = dict(
    eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch", load_best_model_at_end=True,
    metric_for_best_model="accuracy", remove_unused_columns=False, ddp_find_unused_parameters=False,
)  # fmt: skip
# Where a ValueError or OSError comes from the user's arguments, data or output folder (see user_errors).
USER_ERROR = "_train_hf_user_error"


def parse_args(argv: list[str] | None = None):
    parser = HfArgumentParser((ModelArguments, DataArguments, AugmentationArguments, TrainingArguments))
    parser.set_defaults(**TRAINING_DEFAULTS)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0].endswith(RECIPE_SUFFIXES):
        argv = recipe_to_argv(argv[0], parser) + argv[1:]
    *parsed, unknown = parser.parse_args_into_dataclasses(
        args=argv, look_for_args_file=False, return_remaining_strings=True
    )
    if unknown:
        known = [option for action in parser._actions for option in action.option_strings]
        hint = "".join(f" (did you mean {m!r}?)" for m in difflib.get_close_matches(unknown[0], known, n=1))
        raise ValueError(f"unknown argument {unknown[0]!r}{hint}")
    return parsed


def setup_logging(training_args: TrainingArguments) -> None:
    """As the transformers examples: INFO on the main process, WARNING elsewhere."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=[logging.StreamHandler()]
    )
    # Makes get_process_log_level give INFO on the main process (log_level passive).
    if training_args.should_log:
        transformers.utils.logging.set_verbosity_info()
    log_level = training_args.get_process_log_level()
    for name in ("train_hf", "vocalsound_hf"):
        logging.getLogger(name).setLevel(log_level)
    datasets.utils.logging.set_verbosity(max(log_level, logging.WARNING))
    transformers.utils.logging.set_verbosity(max(log_level, logging.WARNING))
    shown = (training_args.process_index, training_args.world_size, training_args.device)
    logger.info(
        "process %d of %d, device %s, bf16 %s, fp16 %s", *shown, training_args.bf16, training_args.fp16
    )


def check_paths(model_args, data_args) -> None:
    """A local folder or file that is not there, named with its argument (not looked up as a Hub id)."""
    expected = {
        "data_dir": (data_args.data_dir, "a raw VocalSound release, folder or zip"),
        "dataset_name": (data_args.dataset_name, "a Hub dataset id or an exported dataset folder"),
        "model_name_or_path": (model_args.model_name_or_path, "a Hub model id or a trained model's folder"),
        "init_checkpoint": (model_args.init_checkpoint, "a Hub model id, a folder or a weights file"),
    }
    for name, (value, what) in expected.items():
        # Any --data_dir is a path; the others are paths unless they may be Hub ids (missing_location).
        missing = value and not Path(value).exists() and (name == "data_dir" or missing_location(value))
        if missing:
            raise FileNotFoundError(f"--{name} {value}: no such file or folder (expected {what})")


def check_arguments(model_args, data_args, aug_args, training_args) -> str | None:
    """Everything that can be wrong with the arguments, checked before any data is read; returns the
    checkpoint folder a training run resumes from (the newest complete one for ``true``), if any."""
    resume = training_args.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "last"):
        resume = True
    resume = resume if training_args.do_train else None
    check_output_dir(training_args.output_dir, resume=bool(resume))
    checkpoint = resume_checkpoint(training_args.output_dir, resume)
    check_paths(model_args, data_args)
    if not (training_args.do_train or training_args.do_eval or training_args.do_predict):
        raise ValueError("nothing to do: pass --do_train, --do_eval and/or --do_predict")
    if training_args.do_train and training_args.remove_unused_columns:
        raise ValueError("--remove_unused_columns must be false: the collator reads the 'audio' column")
    if training_args.do_train and model_args.wa_start is not None:
        model_args.wa_end = model_args.wa_end or int(training_args.num_train_epochs)
        if not training_args.do_eval:
            raise ValueError(
                "--wa_start: weight averaging is chosen on validation accuracy, so it needs --do_eval"
            )
        if not 1 <= model_args.wa_start <= model_args.wa_end <= training_args.num_train_epochs:
            raise ValueError(
                f"--wa_start {model_args.wa_start} / --wa_end {model_args.wa_end}: expected "
                f"1 <= wa_start <= wa_end <= num_train_epochs ({training_args.num_train_epochs})"
            )
        if training_args.save_strategy != "epoch" or training_args.save_total_limit is not None:
            raise ValueError(
                "weight averaging needs every epoch's checkpoint: save_strategy epoch, no save_total_limit"
            )
    if (data_args.norm_mean is None) != (data_args.norm_std is None):
        raise ValueError("--norm_mean and --norm_std: pass both or neither")
    if data_args.cache_features and aug_args.mixup > 0:
        raise ValueError("--mixup mixes waveforms before the fbank, so it cannot use --cache_features")
    if model_args.init != "scratch" and model_args.init_checkpoint is None:
        raise ValueError(
            f"--init {model_args.init} needs --init_checkpoint (a Hub id, folder or file of the weights)"
        )
    return checkpoint


def norm_stats(data_args, train_split) -> tuple[float, float]:
    """The fbank mean and std of a new model: given, from the dataset card, or computed on the train split."""
    if data_args.norm_mean is not None:
        return data_args.norm_mean, data_args.norm_std
    if data_args.dataset_name:
        card = read_norm_stats(data_args.dataset_name, data_args.dataset_config_name)
        if card is not None and card.describes():
            logger.info("fbank stats from the dataset card of %s: %s", data_args.dataset_name, card)
            return card.mean, card.std
        if card is not None:
            logger.info(
                "the dataset card's fbank stats describe other inputs (%s): recomputing them", card.frames
            )
    if train_split is None:
        raise ValueError("no norm stats: pass --norm_mean and --norm_std, or a dataset with a train split")
    stats = compute_norm_stats(train_split)
    logger.info("computed the fbank stats of the train split: %s", stats)
    return stats.mean, stats.std


def load_model(model_args, data_args, raw: datasets.DatasetDict, label_names: list[str], checkpoint):
    """``(model, feature_extractor, base_model)``: a trained model to continue, or a new AST and its features.

    A trained model, and the ``checkpoint`` a run resumes from, keep the fbank stats they were trained with
    unless new ones are given.
    """
    if checkpoint and not (Path(checkpoint) / "preprocessor_config.json").is_file():
        checkpoint = None  # a checkpoint saved without its feature extractor: the stats of a new model
    if model_args.model_name_or_path or checkpoint:
        source = model_args.model_name_or_path or checkpoint
        feature_extractor = AutoFeatureExtractor.from_pretrained(source)
        given, saved = (
            (data_args.norm_mean, data_args.norm_std),
            (feature_extractor.mean, feature_extractor.std),
        )
        if data_args.norm_mean is not None and given != saved:
            replacing = (
                "replacing the fbank stats of %s (mean %.7f, std %.7f) with --norm_mean %.7f --norm_std %.7f"
            )
            logger.warning(replacing, source, *saved, *given)
            feature_extractor.mean, feature_extractor.std = given
        else:
            logger.info("keeping the fbank stats of %s: mean %.7f, std %.7f", source, *saved)
    if model_args.model_name_or_path:
        model = AutoModelForAudioClassification.from_pretrained(model_args.model_name_or_path)
        return model, feature_extractor, model_args.model_name_or_path
    stats = (feature_extractor.mean, feature_extractor.std) if checkpoint else None
    mean, std = stats or norm_stats(data_args, raw.get("train"))
    model = build_ast(
        label_dim=len(label_names),
        fstride=model_args.fstride,
        tstride=model_args.tstride,
        input_tdim=model_args.input_tdim,
        imagenet_pretrain=model_args.init_checkpoint if model_args.init == "imagenet" else None,
        audioset_pretrain=model_args.init_checkpoint if model_args.init == "audioset" else None,
        model_size=model_args.model_size,
        head=model_args.head,
        labels=label_names,
        **model_args.architecture_overrides(),
    )
    return model, make_feature_extractor(model_args.input_tdim, mean, std), model_args.init_checkpoint


def main(argv: list[str] | None = None) -> dict:
    with user_errors():  # everything read and checked before the first training step
        model_args, data_args, aug_args, training_args = parse_args(argv)
        setup_logging(training_args)
        checkpoint = check_arguments(model_args, data_args, aug_args, training_args)

        splits = (
            (["train", "validation"] if training_args.do_train else [])
            + (["validation", "test"] if training_args.do_eval else [])
            + (["test"] if training_args.do_predict else [])
        )
        with training_args.main_process_first(desc="loading the dataset"):
            raw = load_splits(
                data_args.data_dir,
                data_args.dataset_name,
                data_args.dataset_config_name,
                dict.fromkeys(splits),
                split_source=data_args.split_source,
            )
        source = data_args.dataset_name or data_args.data_dir
        label_names = raw[splits[0]].features["label"].names
        logger.info(
            "data %s: %s", source, ", ".join(f"{name} {len(split)} clips" for name, split in raw.items())
        )

        set_seed(training_args.seed)
        model, feature_extractor, base_model = load_model(model_args, data_args, raw, label_names, checkpoint)
        check_labels(model.config, label_names, source)
        max_length, mean, std = model.config.max_length, feature_extractor.mean, feature_extractor.std
        logger.info("fbank normalisation: mean %.7f, std %.7f; %d frames", mean, std, max_length)
        if data_args.cache_features:
            with training_args.main_process_first(desc="caching fbank features"):
                raw = datasets.DatasetDict(
                    {name: cache_fbank(split, max_length) for name, split in raw.items()}
                )

        metric = load_metric()
        validation = raw.get("validation")
        trainer = VocalSoundTrainer(
            model=model,
            args=training_args,
            train_dataset=raw.get("train"),
            eval_dataset=validation,
            data_collator=VocalSoundCollator(max_length),
            processing_class=feature_extractor,
            compute_metrics=SplitMetrics(
                metric, label_names, clip_metadata(validation) if validation else None
            ),
            callbacks=[OneLineLogCallback()],
            features=FeaturePipeline(mean, std, max_length, **asdict(aug_args)),
        )

    results: dict = {"world_size": training_args.world_size, "norm_mean": mean, "norm_std": std}
    if training_args.do_train:
        results.update(trainer.train(resume_from_checkpoint=checkpoint).metrics)
        best = trainer.state.best_model_checkpoint
        results["selected_model"] = Path(best).name if best else "the last epoch"
    if training_args.do_eval:
        for name in ("validation", "test"):
            results.update(evaluate_split(trainer, raw[name], name, metric))
    if training_args.do_train and model_args.wa_start is not None:
        evaluate_weight_average(trainer, raw, metric, results, model_args.wa_start, model_args.wa_end)
    if training_args.do_predict:
        predictions = predict_split(trainer, raw["test"], "test", metric).predictions
        if trainer.is_world_process_zero():
            path = Path(training_args.output_dir) / PREDICTIONS_FILE
            write_predictions(path, raw["test"], predictions, label_names)

    if training_args.do_train:
        save_model(trainer, training_args.output_dir)
    if trainer.is_world_process_zero():
        write_outputs(results, model_args, aug_args, training_args, source, base_model)
    if training_args.push_to_hub and training_args.do_train:
        trainer.push_to_hub()
    return results


@contextmanager
def user_errors() -> Iterator[None]:
    """Marks a ValueError or OSError raised inside as a mistake of the user's, which ``cli`` reports in one line.

    The same types raised later, while training, are bugs (or a failing disk) and keep their traceback.
    """
    try:
        yield
    except (ValueError, OSError) as error:
        setattr(error, USER_ERROR, True)
        raise


def cli(argv: list[str] | None = None) -> None:
    """``main`` for the command line: a user error is ``train_hf.py: error: <message>`` and exit status 2.

    Under ``accelerate launch`` every process meets the same error; the first process of each node prints it,
    the others exit silently (argparse's own errors are printed by every process).
    """
    try:
        main(argv)
    except (ValueError, OSError) as error:
        if not getattr(error, USER_ERROR, False):
            raise
        if os.environ.get("LOCAL_RANK", "0") == "0":
            message = " ".join(str(error).split("\n"))
            print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
