#!/usr/bin/env python
"""Fine-tune (or evaluate) the Audio Spectrogram Transformer on VocalSound with the transformers Trainer.

    accelerate launch train_hf.py recipes/vocalsound_audioset.yaml --output_dir outputs/ast --per_device_train_batch_size 12
    python train_hf.py --dataset_name DIR --model_name_or_path outputs/ast --do_eval --output_dir outputs/eval

The first argument may be a YAML or JSON recipe; arguments after it override the recipe's values. Every
``TrainingArguments`` option is accepted (``--output_dir``, batch sizes, ``--learning_rate``, ``--bf16``,
``--gradient_accumulation_steps``, ``--push_to_hub``, ...).
"""

from __future__ import annotations

import logging
import sys
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
from vocalsound_hf.models.presets import HEADS, INITS, MODEL_SIZES
from vocalsound_hf.release import SPLIT_SOURCES
from vocalsound_hf.training.averaging import evaluate_weight_average
from vocalsound_hf.training.collator import VocalSoundCollator, cache_fbank
from vocalsound_hf.training.evaluation import SplitMetrics, evaluate_split, predict_split
from vocalsound_hf.training.model_card import subgroup_table, write_model_card
from vocalsound_hf.training.outputs import check_output_dir, resume_checkpoint, save_model
from vocalsound_hf.training.pipeline import FeaturePipeline
from vocalsound_hf.training.recipes import RECIPE_SUFFIXES, recipe_to_argv
from vocalsound_hf.training.results import PREDICTIONS_FILE, write_predictions, write_results
from vocalsound_hf.training.splits import check_labels, clip_metadata, load_splits
from vocalsound_hf.training.trainer import OneLineLogCallback, VocalSoundTrainer

logger = logging.getLogger("train_hf")


@dataclass
class ModelArguments:
    """Which AST to build (or load) and how to initialise it."""

    model_size: str = field(default="base384", metadata={"help": "DeiT preset", "choices": list(MODEL_SIZES)})
    init: str = field(
        default="scratch",
        metadata={
            "help": "initial weights: random, ImageNet DeiT, or AudioSet AST",
            "choices": list(INITS),
        },
    )
    init_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "weights for --init imagenet (a distilled DeiT: Hub id, folder or timm file, e.g. "
            "facebook/deit-base-distilled-patch16-384) or audioset (an AST: Hub id, folder or original .pth, e.g. "
            "MIT/ast-finetuned-audioset-10-10-0.4593)"
        },
    )
    head: str = field(
        default="new",
        metadata={
            "help": "classifier head: new, or the AudioSet head's six VocalSound rows",
            "choices": list(HEADS),
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "a trained VocalSound AST (folder or Hub id) to evaluate or fine-tune further, instead of --init"
        },
    )
    input_tdim: int = field(
        default=512, metadata={"help": "frames per clip (10 ms each); clips are padded or cut"}
    )
    fstride: int = field(default=10, metadata={"help": "patch stride over frequency (16 = no overlap)"})
    tstride: int = field(default=10, metadata={"help": "patch stride over time (16 = no overlap)"})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "override the preset's depth"})
    hidden_size: int | None = field(default=None, metadata={"help": "override the preset's width"})
    num_attention_heads: int | None = field(default=None, metadata={"help": "override the preset's heads"})
    intermediate_size: int | None = field(default=None, metadata={"help": "override the preset's MLP width"})
    wa_start: int | None = field(
        default=None,
        metadata={"help": "average the weights of epochs wa_start..wa_end (1-based) and evaluate them too"},
    )
    wa_end: int | None = field(
        default=None, metadata={"help": "last epoch of weight averaging (default: the last)"}
    )

    def architecture_overrides(self) -> dict[str, int]:
        names = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class DataArguments:
    """Where the data comes from and how its features are made."""

    data_dir: str | None = field(default=None, metadata={"help": "a raw VocalSound release (folder or zip)"})
    dataset_name: str | None = field(
        default=None, metadata={"help": "a Hub dataset id or an exported dataset folder"}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "dataset config (16k or 44k)"})
    split_source: str = field(
        default="datafiles",
        metadata={
            "help": "with --data_dir: the official split files or every wav by speaker",
            "choices": list(SPLIT_SOURCES),
        },
    )
    norm_mean: float | None = field(
        default=None, metadata={"help": "fbank mean (default: the dataset card's, else computed)"}
    )
    norm_std: float | None = field(
        default=None, metadata={"help": "fbank std (default: the dataset card's, else computed)"}
    )
    cache_features: bool = field(
        default=False,
        metadata={"help": "compute fbanks once with datasets.map instead of per batch (no --mixup)"},
    )


@dataclass
class AugmentationArguments:
    """The original recipe's training augmentations (off for validation and test)."""

    freqm: int = field(default=0, metadata={"help": "SpecAugment frequency mask width (48 in the paper)"})
    timem: int = field(default=0, metadata={"help": "SpecAugment time mask width (192 in the paper)"})
    mixup: float = field(
        default=0.0, metadata={"help": "probability of waveform mixup with Beta(10, 10) (soft targets)"}
    )
    roll: bool = field(default=False, metadata={"help": "random circular time roll of the fbank"})
    noise: bool = field(default=False, metadata={"help": "the original's uniform fbank noise"})


# What this script needs from TrainingArguments unless the user says otherwise: evaluate and save every
# epoch, keep the best validation accuracy, log each epoch, and keep the audio column for the collator.
TRAINING_DEFAULTS = dict(
    eval_strategy="epoch",
    save_strategy="epoch",
    logging_strategy="epoch",
    load_best_model_at_end=True,
    metric_for_best_model="accuracy",
    remove_unused_columns=False,
    ddp_find_unused_parameters=False,
)


# TrainingArguments shown in the model card's recipe.
RECIPE_TRAINING_KEYS = (
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "seed",
    "bf16",
    "fp16",
)


def parse_args(argv: list[str] | None = None):
    parser = HfArgumentParser((ModelArguments, DataArguments, AugmentationArguments, TrainingArguments))
    parser.set_defaults(**TRAINING_DEFAULTS)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0].endswith(RECIPE_SUFFIXES):
        argv = recipe_to_argv(argv[0], parser) + argv[1:]
    return parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)


def setup_logging(training_args: TrainingArguments) -> None:
    """As the transformers examples: INFO on the main process, WARNING elsewhere."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=[logging.StreamHandler()]
    )
    if (
        training_args.should_log
    ):  # makes get_process_log_level give INFO on the main process (log_level passive)
        transformers.utils.logging.set_verbosity_info()
    log_level = training_args.get_process_log_level()
    for name in ("train_hf", "vocalsound_hf"):
        logging.getLogger(name).setLevel(log_level)
    datasets.utils.logging.set_verbosity(max(log_level, logging.WARNING))
    transformers.utils.logging.set_verbosity(max(log_level, logging.WARNING))
    logger.info(
        "process %d of %d, device %s, bf16 %s, fp16 %s",
        training_args.process_index,
        training_args.world_size,
        training_args.device,
        training_args.bf16,
        training_args.fp16,
    )


def check_arguments(model_args, data_args, aug_args, training_args) -> bool | str | None:
    """Everything that can be wrong with the arguments, checked before any data is read; returns the resume."""
    resume = training_args.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "last"):
        resume = True
    check_output_dir(training_args.output_dir, resume=bool(resume) and training_args.do_train)
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
    return resume


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
    if model_args.model_name_or_path or checkpoint:
        source = model_args.model_name_or_path or checkpoint
        feature_extractor = AutoFeatureExtractor.from_pretrained(source)
        given = (data_args.norm_mean, data_args.norm_std)
        if data_args.norm_mean is not None and given != (feature_extractor.mean, feature_extractor.std):
            logger.warning(
                "replacing the fbank stats of %s (mean %.7f, std %.7f) with --norm_mean %.7f --norm_std %.7f",
                source,
                feature_extractor.mean,
                feature_extractor.std,
                data_args.norm_mean,
                data_args.norm_std,
            )
            feature_extractor.mean, feature_extractor.std = data_args.norm_mean, data_args.norm_std
        else:
            logger.info(
                "keeping the fbank stats of %s: mean %.7f, std %.7f",
                source,
                feature_extractor.mean,
                feature_extractor.std,
            )
    if model_args.model_name_or_path:
        model = AutoModelForAudioClassification.from_pretrained(model_args.model_name_or_path)
        return model, feature_extractor, model_args.model_name_or_path
    mean, std = (
        (feature_extractor.mean, feature_extractor.std)
        if checkpoint
        else norm_stats(data_args, raw.get("train"))
    )
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


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, aug_args, training_args = parse_args(argv)
    setup_logging(training_args)
    resume = check_arguments(model_args, data_args, aug_args, training_args)

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
    logger.info("data %s: %s", source, ", ".join(f"{name} {len(split)} clips" for name, split in raw.items()))

    set_seed(training_args.seed)
    checkpoint = resume_checkpoint(training_args.output_dir, resume) if training_args.do_train else None
    model, feature_extractor, base_model = load_model(model_args, data_args, raw, label_names, checkpoint)
    check_labels(model.config, label_names, source)
    max_length, mean, std = model.config.max_length, feature_extractor.mean, feature_extractor.std
    logger.info("fbank normalisation: mean %.7f, std %.7f; %d frames", mean, std, max_length)
    if data_args.cache_features:
        with training_args.main_process_first(desc="caching fbank features"):
            raw = datasets.DatasetDict({name: cache_fbank(split, max_length) for name, split in raw.items()})

    metric = load_metric()
    validation = raw.get("validation")
    trainer = VocalSoundTrainer(
        model=model,
        args=training_args,
        train_dataset=raw.get("train"),
        eval_dataset=validation,
        data_collator=VocalSoundCollator(max_length),
        processing_class=feature_extractor,
        compute_metrics=SplitMetrics(metric, label_names, clip_metadata(validation) if validation else None),
        callbacks=[OneLineLogCallback()],
        features=FeaturePipeline(mean, std, max_length, **asdict(aug_args)),
    )

    results: dict = {"world_size": training_args.world_size, "norm_mean": mean, "norm_std": std}
    if training_args.do_train:
        results.update(trainer.train(resume_from_checkpoint=resume).metrics)
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


if __name__ == "__main__":
    main()
