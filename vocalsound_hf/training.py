"""Fine-tuning and evaluating AST on VocalSound with the transformers ``Trainer``: the library behind ``train_hf.py``.

The Trainer does the training loop, distribution (through accelerate), mixed precision, checkpointing,
resuming and best-checkpoint selection. This module adds what VocalSound's recipe needs on top:

- a collator that batches 16 kHz waveforms (or cached fbanks) and keeps the speaker metadata out of the
  model inputs;
- a ``Trainer`` subclass that turns a batch into AST features on the model's device (fbank, then the
  original recipe's mixup, SpecAugment, normalisation, noise and roll on the training split only) and
  trains with cross-entropy on soft targets when mixup is on;
- metrics over the whole split gathered from every rank, including accuracy per metadata subgroup;
- checkpoint weight averaging, the original's result files, and a model card.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch.nn import functional as F
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import EvalPrediction, get_last_checkpoint

from . import augment
from .features import FRAME_LENGTH, FRAME_SHIFT, batch_fbank, normalize_fbank
from .metrics import METADATA_COLUMNS, classification_metrics
from .release import CITATION, CLASS_NAMES, EVAL_RESULT_HEADER, LICENSE, TARGET_SAMPLING_RATE

logger = logging.getLogger(__name__)

FBANK_COLUMN = "fbank"
RESULTS_FILE = "results.json"
EVAL_RESULT_FILE = "all_eval_result.csv"
WA_EVAL_RESULT_FILE = "wa_eval_result.csv"
# The columns of all_eval_result.csv (EVAL_RESULT_HEADER), as keys of results.json.
EVAL_RESULT_KEYS: tuple[str, ...] = (
    "validation_accuracy",
    "test_accuracy",
    "test_accuracy_age_18_25",
    "test_accuracy_age_26_48",
    "test_accuracy_age_49_80",
    "test_accuracy_female",
    "test_accuracy_male",
)
RECIPE_SUFFIXES = (".yaml", ".yml", ".json")


# --- recipes ---------------------------------------------------------------------------------------------


def recipe_to_argv(recipe: str | os.PathLike, parser) -> list[str]:
    """Command-line arguments equivalent to a YAML or JSON recipe, for ``parser`` (an ``HfArgumentParser``).

    ``HfArgumentParser.parse_yaml_file`` cannot take command-line overrides, so the recipe is turned into
    arguments placed before the user's: argparse keeps the last value given, and the command line wins.
    Unknown keys are reported with the recipe's name and the closest known argument.
    """
    import yaml

    path = Path(recipe)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    text = path.read_text()
    values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(values, dict):
        raise ValueError(
            f"recipe {path}: expected a mapping of argument names to values, got {type(values).__name__}"
        )
    known = {action.dest for action in parser._actions}
    argv: list[str] = []
    for key, value in values.items():
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            raise ValueError(
                f"recipe {path}: unknown argument {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )
        if value is None:
            continue
        argv.append(f"--{key}")
        if isinstance(value, bool):
            argv.append(str(value).lower())
        elif isinstance(value, list):
            argv.extend(str(item) for item in value)
        elif isinstance(value, dict):
            argv.append(json.dumps(value))
        else:
            argv.append(str(value))
    return argv


# --- data ------------------------------------------------------------------------------------------------


def load_splits(
    data_dir: str | None,
    dataset_name: str | None,
    dataset_config_name: str | None,
    splits: Iterable[str],
    **load_kwargs: Any,
) -> datasets.DatasetDict:
    """The needed splits of a raw release (``data_dir``, through the builder) or of a Hub/exported dataset.

    Audio is decoded as 16 kHz mono (datasets resamples and down-mixes on decode). Raises ``ValueError``
    naming the dataset, split and column when a split is missing or empty, or has no ``audio`` (``Audio``)
    or ``label`` (``ClassLabel``) column.
    """
    if (data_dir is None) == (dataset_name is None):
        raise ValueError(
            "pass exactly one of --data_dir (a raw VocalSound release) and --dataset_name (a Hub id or folder)"
        )
    if data_dir is not None:
        from .data.builder import load_vocalsound

        source = data_dir
        dataset = load_vocalsound(data_dir, **load_kwargs)
    else:
        source = dataset_name
        try:
            dataset = datasets.load_dataset(dataset_name, dataset_config_name)
        except (
            ValueError
        ) as error:  # e.g. a split file without rows: "Instruction 'test' corresponds to no data"
            raise ValueError(f"{source}: cannot load the dataset: {error}") from error
    if not isinstance(dataset, datasets.DatasetDict):
        raise ValueError(f"{source}: expected a dataset with splits, got {type(dataset).__name__}")
    splits = list(splits)
    for split in splits:
        if split not in dataset:
            raise ValueError(f"{source}: no {split!r} split (found: {', '.join(dataset) or 'none'})")
        columns = dataset[split].features
        if not isinstance(columns.get("audio"), datasets.Audio):
            raise ValueError(
                f"{source}: split {split!r} has no 'audio' column of type datasets.Audio "
                f"(columns: {', '.join(columns)}; 'audio' is {type(columns.get('audio')).__name__})"
            )
        if not isinstance(columns.get("label"), datasets.ClassLabel):
            raise ValueError(
                f"{source}: split {split!r} has no 'label' column of type datasets.ClassLabel "
                f"(columns: {', '.join(columns)}; 'label' is {type(columns.get('label')).__name__})"
            )
        if len(dataset[split]) == 0:
            raise ValueError(f"{source}: split {split!r} is empty")
    names = {split: dataset[split].features["label"].names for split in splits}
    if len({tuple(n) for n in names.values()}) > 1:
        raise ValueError(f"{source}: the splits name their labels differently: {names}")
    dataset = datasets.DatasetDict({split: dataset[split] for split in splits})
    return dataset.cast_column("audio", datasets.Audio(sampling_rate=TARGET_SAMPLING_RATE, num_channels=1))


def check_labels(model_config, label_names: Sequence[str], source: str) -> None:
    """Raise ``ValueError`` unless the model's ``id2label`` is exactly the dataset's ``label`` names, in order."""
    model_labels = [model_config.id2label[i] for i in range(model_config.num_labels)]
    if model_labels != list(label_names):
        raise ValueError(
            f"the labels of {source} ({list(label_names)}) do not match the model's id2label ({model_labels}); "
            "the class ids must mean the same classes"
        )


def cache_fbank(split: datasets.Dataset, max_length: int, num_mel_bins: int = 128, batch_size: int = 64):
    """The split with its audio replaced by un-normalised fbanks (column ``fbank``), computed once with ``map``.

    The features are those the collator path computes per batch, before SpecAugment and normalisation, so
    every augmentation but waveform mixup still applies. ``datasets`` caches the result on disk.
    """

    def to_fbank(batch):
        waveforms = [decoded_waveform(audio) for audio in batch["audio"]]
        fbank = batch_fbank(waveforms, max_length=max_length, num_mel_bins=num_mel_bins, normalize=False)
        return {FBANK_COLUMN: fbank.numpy()}

    features = split.features.copy()
    del features["audio"]
    features[FBANK_COLUMN] = datasets.Array2D((max_length, num_mel_bins), "float32")
    cached = split.map(
        to_fbank,
        batched=True,
        batch_size=batch_size,
        remove_columns=["audio"],
        features=features,
        desc=f"Caching fbank features ({max_length} frames)",
    )
    return cached.with_format("numpy", columns=[FBANK_COLUMN], output_all_columns=True)


def decoded_waveform(audio) -> torch.Tensor:
    """The mono float32 waveform of a decoded ``Audio`` value (a torchcodec decoder, as datasets returns it)."""
    return audio.get_all_samples().data.to(torch.float32).mean(dim=0)


def clip_metadata(split) -> dict[str, list[str | None]]:
    """The split's speaker metadata used by the subgroup metrics, as strings (``ClassLabel`` ids decoded)."""
    metadata = {}
    for column in METADATA_COLUMNS:
        if column not in split.column_names:
            continue
        feature = split.features[column]
        values = list(split.with_format(None)[column])
        if isinstance(feature, datasets.ClassLabel):
            values = [None if v is None or v < 0 else feature.int2str(v) for v in values]
        metadata[column] = values
    return metadata


class VocalSoundCollator:
    """Batches clips for the Trainer; the features are made on the device, by ``VocalSoundTrainer``.

    A batch holds ``labels`` and either ``waveforms`` (16 kHz mono, zero-padded to the longest clip, cut at
    the samples that ``max_length`` frames read) with their ``lengths``, or cached ``fbank`` features. Other
    columns (the speaker metadata) stay in the dataset, for the subgroup metrics.
    """

    def __init__(self, max_length: int):
        self.max_samples = FRAME_LENGTH + (max_length - 1) * FRAME_SHIFT

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        labels = torch.tensor([example["label"] for example in examples], dtype=torch.long)
        if FBANK_COLUMN in examples[0]:
            return {
                FBANK_COLUMN: torch.stack([torch.as_tensor(e[FBANK_COLUMN]) for e in examples]),
                "labels": labels,
            }
        waveforms = [decoded_waveform(example["audio"])[: self.max_samples] for example in examples]
        lengths = torch.tensor([len(w) for w in waveforms], dtype=torch.long)
        padded = torch.nn.utils.rnn.pad_sequence(waveforms, batch_first=True)
        return {"waveforms": padded, "lengths": lengths, "labels": labels}


# --- features, augmentation and loss ---------------------------------------------------------------------


class FeaturePipeline:
    """AST input features of a batch, on its device, with the original recipe's augmentations when training.

    Order as in the original dataloader: waveform mixup (Beta(10, 10), soft targets), fbank, SpecAugment on
    the un-normalised log-mel, normalisation ``(x - mean) / (2 * std)``, noise, roll. Randomness comes from
    torch's global generator, which the Trainer seeds, checkpoints and restores, so a resumed run draws
    the same augmentations as an uninterrupted one.
    """

    def __init__(
        self,
        mean: float,
        std: float,
        max_length: int,
        num_mel_bins: int = 128,
        freqm: int = 0,
        timem: int = 0,
        mixup: float = 0.0,
        roll: bool = False,
        noise: bool = False,
    ):
        self.mean, self.std = float(mean), float(std)
        self.max_length, self.num_mel_bins = max_length, num_mel_bins
        self.freqm, self.timem, self.mixup, self.roll, self.noise = freqm, timem, mixup, roll, noise

    def __call__(self, batch: Mapping[str, torch.Tensor], num_labels: int, training: bool):
        """``(input_values, targets)``: features ``[B, max_length, num_mel_bins]`` and class ids or soft targets."""
        targets = batch["labels"]
        if FBANK_COLUMN in batch:
            fbank = batch[FBANK_COLUMN].float()
        else:
            waveforms, lengths = batch["waveforms"].float(), batch["lengths"]
            if training and self.mixup > 0:
                mixed = augment.mixup(waveforms, lengths, targets, prob=self.mixup, num_classes=num_labels)
                waveforms, targets = mixed.waveforms, mixed.targets
            fbank = batch_fbank(
                waveforms,
                max_length=self.max_length,
                num_mel_bins=self.num_mel_bins,
                lengths=lengths,
                normalize=False,
            )
        if training and (self.freqm or self.timem):
            fbank = augment.spec_augment(fbank, freqm=self.freqm, timem=self.timem)
        fbank = normalize_fbank(fbank, self.mean, self.std)
        if training and self.noise:
            fbank = augment.add_uniform_noise(fbank)
        if training and self.roll:
            fbank = augment.random_roll(fbank)
        return fbank, targets


class SplitMetrics:
    """``compute_metrics`` for the Trainer: the scalar metrics of a whole split, subgroups included.

    The Trainer gathers predictions from every rank in dataset order (uneven splits too), so the clips'
    metadata is aligned by position; ``VocalSoundTrainer`` sets ``metadata`` to the split being evaluated.
    It runs on every rank; only the main process writes or prints.
    """

    def __init__(self, metric, class_names: Sequence[str]):
        self.metric, self.class_names = metric, list(class_names)
        self.metadata: dict[str, list] | None = None

    def __call__(self, prediction: EvalPrediction) -> dict[str, float]:
        results = classification_metrics(
            self.metric, prediction.predictions, prediction.label_ids, self.class_names, self.metadata
        )
        # The Trainer logs these each evaluation: scalars only (the confusion matrix goes to results.json).
        return {k: v for k, v in results.items() if isinstance(v, float) and not k.startswith("samples_")}


class VocalSoundTrainer(Trainer):
    """``Trainer`` that makes AST features on the device and trains with cross-entropy on (soft) targets.

    Augmentations apply when the model is in training mode, i.e. to the training split only. The loss is
    ``F.cross_entropy``, which takes the soft targets of mixup; the model's own loss would switch to BCE for
    float labels.
    """

    # compute_loss returns the batch mean; the Trainer divides it for gradient accumulation.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, features: FeaturePipeline, **kwargs):
        super().__init__(*args, **kwargs)
        self.features = features

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Features in float32 even under bf16/fp16 autocast: the log-mel needs the precision.
        with torch.autocast(device_type=self.accelerator.device.type, enabled=False):
            input_values, targets = self.features(inputs, self.model.config.num_labels, model.training)
        outputs = model(input_values=input_values)
        loss = F.cross_entropy(outputs.logits.float(), targets)
        return (loss, outputs) if return_outputs else loss

    # transformers 5 saves checkpoints in the original key layout (save_pretrained reverts its weight renaming),
    # but the Trainer reloads them with a raw, non-strict load_state_dict: for AST every transformer block is
    # silently left as it was (only a "missing keys" warning), which breaks both --resume_from_checkpoint and
    # load_best_model_at_end. Loading through from_pretrained applies the renaming; the load is then strict.
    # DeepSpeed and FSDP keep their own checkpoint formats and loaders.
    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        load_weights(self.model if model is None else model, resume_from_checkpoint)

    def _load_best_model(self):
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_best_model()
        logger.info(
            "loading the best checkpoint, %s (validation %s %.4f)",
            Path(self.state.best_model_checkpoint).name,
            self.args.metric_for_best_model,
            self.state.best_metric,
        )
        load_weights(self.model, self.state.best_model_checkpoint)

    def create_model_card(self, *args, **kwargs):
        # train_hf.py writes a VocalSound card (metrics, subgroups, recipe) before pushing: keep it.
        if not (Path(self.args.output_dir) / "README.md").is_file():
            super().create_model_card(*args, **kwargs)

    def evaluation_loop(self, dataloader, *args, **kwargs):
        if isinstance(self.compute_metrics, SplitMetrics):
            self.compute_metrics.metadata = clip_metadata(dataloader.dataset)
        return super().evaluation_loop(dataloader, *args, **kwargs)


# --- evaluation, weight averaging, results ---------------------------------------------------------------


def evaluate_split(
    trainer: Trainer, split: datasets.Dataset, name: str, metric, prefix: str = ""
) -> dict[str, Any]:
    """Every metric of ``split`` (predictions gathered from all ranks) with keys ``{prefix}{name}_...``.

    Adds ``{name}_samples`` (clips evaluated, each exactly once) and ``{name}_loss``, the mean cross-entropy
    over the clips. The Trainer's own eval loss averages per-batch means, including the clips that pad the
    last batch of each rank, so it changes slightly with the number of processes; this one does not.
    """
    output = trainer.predict(split, metric_key_prefix=name)
    class_names = [trainer.model.config.id2label[i] for i in range(trainer.model.config.num_labels)]
    results = classification_metrics(
        metric, output.predictions, output.label_ids, class_names, clip_metadata(split)
    )
    results["samples"] = int(len(output.label_ids))
    logits = torch.as_tensor(output.predictions, dtype=torch.float32)
    results["loss"] = F.cross_entropy(logits, torch.as_tensor(output.label_ids, dtype=torch.long)).item()
    return {f"{prefix}{name}_{key}": value for key, value in results.items()}


def epoch_checkpoints(output_dir: str | os.PathLike, start: int, end: int) -> list[Path]:
    """The checkpoints saved at the end of epochs ``start`` to ``end`` (1-based, inclusive), in epoch order."""
    found: dict[int, Path] = {}
    for folder in Path(output_dir).glob("checkpoint-*"):
        state = folder / "trainer_state.json"
        if state.is_file():
            epoch = json.loads(state.read_text()).get("epoch")
            if epoch is not None and abs(epoch - round(epoch)) < 1e-6:
                found[round(epoch)] = folder
    missing = [e for e in range(start, end + 1) if e not in found]
    if missing:
        raise FileNotFoundError(
            f"weight averaging needs the checkpoints of epochs {start}-{end} in {output_dir}; missing epochs {missing} "
            "(save every epoch with save_strategy epoch and no save_total_limit)"
        )
    return [found[e] for e in range(start, end + 1)]


def checkpoint_state(model_class, checkpoint: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A checkpoint's weights with the key names of ``model_class``, read through ``from_pretrained``.

    ``from_pretrained`` maps the original key layout that ``save_pretrained`` writes onto the module's own names.
    """
    return model_class.from_pretrained(str(checkpoint)).state_dict()


def load_weights(model: torch.nn.Module, checkpoint: str | os.PathLike) -> None:
    """Load a saved checkpoint's weights into ``model`` in place, strictly (every tensor must match)."""
    model.load_state_dict(checkpoint_state(type(model), checkpoint))


def average_weights(model_class, checkpoints: Sequence[Path]) -> dict[str, torch.Tensor]:
    """The mean of the checkpoints' weights, tensor by tensor, as the original's ``--wa`` computes it."""
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for checkpoint in checkpoints:
        state = checkpoint_state(model_class, checkpoint)
        for key, tensor in state.items():
            dtypes.setdefault(key, tensor.dtype)
            total[key] = total.get(key, 0) + tensor.to(torch.float64)
    return {key: (value / len(checkpoints)).to(dtypes[key]) for key, value in total.items()}


def check_output_dir(output_dir: str, resume: bool) -> None:
    """Refuse to train into a non-empty directory unless resuming the run it holds (checked before training)."""
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
        return
    if entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ValueError(
            f"output_dir {path} is not empty (it holds {shown}): choose a new directory, or pass "
            "--resume_from_checkpoint true to continue the run it holds"
        )


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path`` and rename it into place.

    A reader never sees half a file, and a failure leaves the old file as it was. The file keeps the mode
    of the one it replaces (0644 for a new one): ``mkstemp`` alone would leave results readable only by
    their owner.
    """
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    """NaN and infinity become ``None``/strings so that ``results.json`` is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def eval_result_row(results: Mapping[str, Any], prefix: str = "") -> str:
    """One row of ``all_eval_result.csv`` (``EVAL_RESULT_HEADER``); ``nan`` for an empty subgroup."""
    values = [results.get(prefix + key) for key in EVAL_RESULT_KEYS]
    return ",".join("nan" if v is None else f"{v:.6f}" for v in values)


def write_results(output_dir: str | os.PathLike, results: Mapping[str, Any]) -> None:
    """Write ``results.json`` and ``all_eval_result.csv`` (and ``wa_eval_result.csv`` with weight averaging)."""
    output_dir = Path(output_dir)
    write_text_atomically(output_dir / RESULTS_FILE, json.dumps(_json_safe(dict(results)), indent=2) + "\n")
    if "test_accuracy" in results:
        write_text_atomically(
            output_dir / EVAL_RESULT_FILE, f"{EVAL_RESULT_HEADER}\n{eval_result_row(results)}\n"
        )
    if "wa_test_accuracy" in results:
        write_text_atomically(
            output_dir / WA_EVAL_RESULT_FILE, f"{EVAL_RESULT_HEADER}\n{eval_result_row(results, 'wa_')}\n"
        )


def write_predictions(
    path: Path, split: datasets.Dataset, logits: np.ndarray, class_names: Sequence[str]
) -> None:
    """Per-clip predictions with softmax probabilities, as CSV: file, label, prediction, then one column per class."""
    probabilities = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()
    label_names = split.features["label"].names
    file_names = (
        list(split["file_name"]) if "file_name" in split.column_names else [str(i) for i in range(len(split))]
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file_name", "label", "prediction", *class_names])
    for name, label, row in zip(file_names, split.with_format(None)["label"], probabilities):
        writer.writerow(
            [name, label_names[label], class_names[int(row.argmax())], *(f"{p:.6f}" for p in row)]
        )
    write_text_atomically(path, buffer.getvalue())


class OneLineLogCallback(TrainerCallback):
    """Logs each evaluation as one line (the progress bars show the rest)."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if state.is_world_process_zero and metrics:
            shown = {
                k: v for k, v in metrics.items() if k.endswith(("_accuracy", "_macro_f1", "_map", "_loss"))
            }
            logger.info(
                "epoch %.2f: %s",
                state.epoch or 0,
                ", ".join(f"{k} {v:.4f}" for k, v in sorted(shown.items())),
            )


# --- model card ------------------------------------------------------------------------------------------

_SUBGROUP_COLUMNS = ("validation", "all test", "age 18-25", "age 26-48", "age 49-80", "female", "male")


def _percent(value: Any) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"
    )


def subgroup_table(results: Mapping[str, Any], prefix: str = "") -> str:
    """Accuracy (%) per subgroup as a Markdown table in the paper's layout (the columns of ``all_eval_result.csv``)."""
    values = " | ".join(_percent(results.get(prefix + key)) for key in EVAL_RESULT_KEYS)
    return f"| {' | '.join(_SUBGROUP_COLUMNS)} |\n|{'---|' * len(_SUBGROUP_COLUMNS)}\n| {values} |"


def write_model_card(
    output_dir: str | os.PathLike,
    results: Mapping[str, Any],
    *,
    model_name: str,
    dataset_id: str | None,
    base_model: str | None,
    recipe: Mapping[str, Any],
    class_names: Sequence[str] = CLASS_NAMES,
) -> None:
    """Write ``README.md``: YAML metadata (with a ``model-index``), results, subgroup table, recipe, usage, limits."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    dataset_type = dataset_id or "vocalsound"
    eval_results = [
        EvalResult(
            task_type="audio-classification",
            task_name="Audio Classification",
            dataset_type=dataset_type,
            dataset_name="VocalSound",
            dataset_split="test",
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=round(float(results[key]), 4),
        )
        for key, metric_type, metric_name in (
            ("test_accuracy", "accuracy", "Accuracy"),
            ("test_macro_f1", "f1", "Macro F1"),
            ("test_map", "map", "mAP"),
        )
        if results.get(key) is not None
    ]
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="audio-classification",
        license=LICENSE,
        tags=[
            "audio-classification",
            "audio-spectrogram-transformer",
            "vocalsound",
            "generated_from_trainer",
        ],
        datasets=[dataset_id] if dataset_id else None,
        metrics=["accuracy", "f1"],
        base_model=base_model,
        eval_results=eval_results or None,
    )
    metrics_rows = "\n".join(
        f"| {split} | {_percent(results.get(f'{split}_accuracy'))} | {_percent(results.get(f'{split}_macro_f1'))} "
        f"| {_percent(results.get(f'{split}_map'))} | {_percent(results.get(f'{split}_mauc'))} "
        f"| {results.get(f'{split}_samples', 'n/a')} |"
        for split in ("validation", "test")
        if f"{split}_accuracy" in results
    )
    class_rows = "\n".join(
        f"| {name} | {_percent(results.get('test_accuracy_' + re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')))} |"
        for name in class_names
    )
    recipe_lines = "\n".join(f"- `{key}`: `{value}`" for key, value in recipe.items())
    selected = results.get("selected_model", "the checkpoint with the best validation accuracy")
    content = f"""---
{card_data.to_yaml()}
---

# {model_name}

An [Audio Spectrogram Transformer](https://arxiv.org/abs/2104.01778) that classifies human vocal sounds into the
six VocalSound classes ({", ".join(class_names)}), trained on {dataset_type} with `train_hf.py` of
vocalsound-hf (transformers `Trainer`). {"Initialised from `" + base_model + "`." if base_model else "Trained from scratch."}
The model kept is {selected}, chosen by validation accuracy.

## Results

| split | accuracy % | macro-F1 % | mAP % | mAUC % | clips |
|---|---|---|---|---|---|
{metrics_rows}

Accuracy (%) per subgroup, in the paper's table layout (`all_eval_result.csv`):

{subgroup_table(results)}

Test accuracy (%) of speakers without a reported health problem: {_percent(results.get("test_accuracy_healthy"))}
({results.get("test_samples_healthy", "n/a")} clips); with one: {_percent(results.get("test_accuracy_unhealthy"))}
({results.get("test_samples_unhealthy", "n/a")} clips).

Test accuracy (%) per class:

| class | accuracy % |
|---|---|
{class_rows}

Every metric, including the confusion matrix, is in `results.json`.

## How to use

```python
from transformers import pipeline

classifier = pipeline("audio-classification", model="path/or/hub-id/of/this/model")
classifier("clip.wav")  # any sampling rate; the pipeline resamples to 16 kHz
```

## Training recipe

{recipe_lines}

## Intended use and limitations

- Intended for research on recognising non-speech human vocalisations (laughter, sighs, coughs, throat
  clearing, sneezes, sniffs) in short clips recorded by crowd workers, as in VocalSound.
- Not a medical device: it must not be used to diagnose or screen for any health condition.
- It only knows six classes and always answers one of them, also for speech, silence or other sounds.
- Accuracy differs between subgroups (table above); VocalSound's speakers are self-reported adults
  (18-80) from a limited set of countries, so performance on other populations, microphones and
  environments is unknown.
- A model trained on a synthetic stand-in of the release (as in the quickstart) says nothing about real audio.

## Citation

```bibtex
{CITATION}
```
"""
    card = ModelCard(content)
    write_text_atomically(Path(output_dir) / "README.md", str(card))


def save_model(trainer: Trainer, output_dir: str | os.PathLike) -> None:
    """Save the trainer's model and feature extractor into ``output_dir`` (next to its checkpoints), atomically.

    Every rank takes part (DeepSpeed and FSDP gather the weights); the main process writes into a temporary
    folder inside ``output_dir`` and renames each file into place, so no reader sees half a model.
    """
    output_dir = Path(output_dir)
    staging = output_dir / ".final.tmp"
    trainer.save_model(str(staging))
    if trainer.is_world_process_zero():
        for item in staging.iterdir():
            os.replace(item, output_dir / item.name)
        staging.rmdir()
    trainer.accelerator.wait_for_everyone()
