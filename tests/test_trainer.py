"""The Trainer subclass and split evaluation: each override against the upstream behaviour it works around.

Each workaround test shows both halves: the installed transformers' own method goes wrong (so that the test
fails, and the override can go, once upstream changes) and ``VocalSoundTrainer``'s does what is needed.
"""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from torch.nn import functional as F
from transformers import ASTForAudioClassification, Trainer, TrainingArguments

from vocalsound_hf.metrics import load_metric
from vocalsound_hf.release import CLASS_NAMES
from vocalsound_hf.training.collator import FBANK_COLUMN, VocalSoundCollator
from vocalsound_hf.training.evaluation import SplitMetrics, evaluate_split
from vocalsound_hf.training.pipeline import FeaturePipeline
from vocalsound_hf.training.splits import clip_metadata
from vocalsound_hf.training.trainer import VocalSoundTrainer

MAX_LENGTH = 128  # the tiny model's frames
# A block weight the Trainer's own checkpoint loading leaves untouched (it is saved under another name).
BLOCK_WEIGHT = "audio_spectrogram_transformer.layers.0.attention.q_proj.weight"


def _trainer(model, tmp_path, *, mixup: float = 0.0, **arguments) -> VocalSoundTrainer:
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        use_cpu=True,
        remove_unused_columns=False,
        per_device_eval_batch_size=5,
        disable_tqdm=True,
        **arguments,
    )
    return VocalSoundTrainer(
        model=model,
        args=args,
        data_collator=VocalSoundCollator(MAX_LENGTH),
        features=FeaturePipeline(-4.3, 5.1, MAX_LENGTH, mixup=mixup),
    )


def _waveform_batch(size: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "waveforms": 0.1 * torch.randn(size, 16000, generator=generator),
        "lengths": torch.full((size,), 16000),
        "labels": torch.arange(size) % 6,
    }


def _model(tiny_model_dir, seed: int) -> ASTForAudioClassification:
    torch.manual_seed(seed)
    model = ASTForAudioClassification.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.02)
    return model


def test_loss_is_cross_entropy_on_mixup_soft_targets(tiny_model_dir, tmp_path):
    model = _model(tiny_model_dir, 0).train()
    trainer = _trainer(model, tmp_path, mixup=1.0)
    batch = _waveform_batch()
    torch.manual_seed(1)
    loss = trainer.compute_loss(model, batch)
    torch.manual_seed(1)  # the same draws again: mixup, then whatever the forward pass draws
    features, targets = trainer.features(batch, num_labels=6, training=True)
    logits = model(input_values=features).logits
    assert targets.dtype == torch.float32 and targets.shape == (6, 6)  # mixup's soft targets
    assert loss.item() == pytest.approx(F.cross_entropy(logits, targets).item(), abs=1e-5)
    # The model's own loss (single-label classification) takes class ids only: the override is needed.
    with pytest.raises(ValueError, match="batch_size"):
        model(input_values=features, labels=targets)


def test_gradient_accumulation_divides_the_batch_mean_loss(tiny_model_dir, tmp_path):
    model = _model(tiny_model_dir, 0)
    batch = _waveform_batch()

    def step_loss(trainer_class) -> float:
        trainer = trainer_class(
            model=model,
            args=TrainingArguments(output_dir=str(tmp_path / "ga"), report_to="none", use_cpu=True),
            features=FeaturePipeline(-4.3, 5.1, MAX_LENGTH),
        )
        trainer.current_gradient_accumulation_steps = 4
        model.eval()  # no dropout: both steps see the same loss
        with torch.no_grad():
            full = trainer.compute_loss(model, batch).item()
        model.zero_grad()
        # What the training loop passes: the label count of the accumulated batches.
        num_items = trainer._get_num_items_in_batch([batch], trainer.args.device)
        return trainer.training_step(model, batch, num_items_in_batch=num_items).item() / full

    # Left to infer it, the Trainer takes AST's **kwargs forward for a loss already scaled for accumulation.
    upstream = type("InferredScaling", (VocalSoundTrainer,), {"loss_is_scaled_for_ga": None})
    assert step_loss(upstream) == pytest.approx(1.0, rel=1e-4)
    assert step_loss(VocalSoundTrainer) == pytest.approx(0.25, rel=1e-4)


@pytest.fixture
def saved_checkpoint(tiny_model_dir, tmp_path):
    """A checkpoint folder as the Trainer writes it (save_pretrained: AST's original key layout)."""
    model = _model(tiny_model_dir, 1)
    folder = tmp_path / "checkpoint-7"
    model.save_pretrained(folder)
    return folder, model.state_dict()


def test_resuming_loads_every_block_of_the_checkpoint(tiny_model_dir, tmp_path, saved_checkpoint):
    folder, saved = saved_checkpoint
    upstream = _model(tiny_model_dir, 2)
    Trainer._load_from_checkpoint(_trainer(upstream, tmp_path), str(folder))
    assert not torch.equal(
        upstream.state_dict()[BLOCK_WEIGHT], saved[BLOCK_WEIGHT]
    )  # silently left as it was

    model = _model(tiny_model_dir, 2)
    _trainer(model, tmp_path)._load_from_checkpoint(str(folder))
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[key]), key


def test_the_best_model_is_loaded_whole_at_the_end(tiny_model_dir, tmp_path, saved_checkpoint):
    folder, saved = saved_checkpoint

    def trainer_with_best(model):
        trainer = _trainer(model, tmp_path, metric_for_best_model="accuracy")
        trainer.state.best_model_checkpoint, trainer.state.best_metric = str(folder), 0.5
        return trainer

    upstream = _model(tiny_model_dir, 2)
    Trainer._load_best_model(trainer_with_best(upstream))
    assert not torch.equal(upstream.state_dict()[BLOCK_WEIGHT], saved[BLOCK_WEIGHT])

    model = _model(tiny_model_dir, 2)
    trainer_with_best(model)._load_best_model()
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[key]), key


def test_pushing_keeps_the_vocalsound_model_card(tiny_model_dir, tmp_path):
    trainer = _trainer(_model(tiny_model_dir, 0), tmp_path)
    card = tmp_path / "out" / "README.md"
    card.parent.mkdir(parents=True, exist_ok=True)
    card.write_text("---\nlibrary_name: transformers\n---\n\n# The VocalSound card\n")
    trainer.create_model_card(model_name="ast-vocalsound")
    assert card.read_text().endswith("# The VocalSound card\n")
    Trainer.create_model_card(trainer, model_name="ast-vocalsound")
    assert "# The VocalSound card" not in card.read_text()  # the Trainer's own card replaces it
    card.unlink()
    trainer.create_model_card(model_name="ast-vocalsound")  # without a card of ours, the Trainer's is written
    assert card.is_file()


def _fbank_split(genders: list[str], seed: int) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    features = datasets.Features(
        {
            FBANK_COLUMN: datasets.Array2D((MAX_LENGTH, 128), "float32"),
            "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
            "gender": datasets.ClassLabel(names=["female", "male"]),
        }
    )
    rows = {
        FBANK_COLUMN: rng.normal(-4, 3, (len(genders), MAX_LENGTH, 128)).astype(np.float32),
        "label": [i % 6 for i in range(len(genders))],
        "gender": genders,
    }
    split = datasets.Dataset.from_dict(rows, features=features)
    return split.with_format("numpy", columns=[FBANK_COLUMN], output_all_columns=True)


def test_a_split_is_evaluated_once_with_its_own_metadata(tiny_model_dir, tmp_path):
    metric = load_metric()
    validation = _fbank_split(["female"] * 6, seed=0)
    test = _fbank_split(["male"] * 4 + ["female"] * 7, seed=1)
    trainer = _trainer(_model(tiny_model_dir, 0), tmp_path)
    during_training = SplitMetrics(metric, CLASS_NAMES, clip_metadata(validation))
    trainer.compute_metrics = during_training
    calls = []
    original = metric.compute
    metric.compute = lambda **kwargs: calls.append(1) or original(**kwargs)

    results = evaluate_split(trainer, test, "test", metric, prefix="wa_")
    assert len(calls) == 1  # one metric pass: the Trainer's
    assert trainer.compute_metrics is during_training
    assert (
        results["wa_test_samples"],
        results["wa_test_samples_male"],
        results["wa_test_samples_female"],
    ) == (
        11,
        4,
        7,
    )
    trainer.compute_metrics = None
    logits = trainer.predict(test).predictions
    predicted, labels = logits.argmax(1), np.arange(11) % 6
    assert results["wa_test_accuracy"] == pytest.approx(float((predicted == labels).mean()))
    assert results["wa_test_accuracy_male"] == pytest.approx(float((predicted[:4] == labels[:4]).mean()))
    expected_loss = F.cross_entropy(torch.as_tensor(logits), torch.as_tensor(labels)).item()
    assert results["wa_test_loss"] == pytest.approx(expected_loss, abs=1e-6)
    assert len(results["wa_test_confusion_matrix"]) == 6
