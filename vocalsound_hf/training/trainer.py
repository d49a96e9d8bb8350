"""The ``Trainer`` subclass: AST features made on the device, cross-entropy on soft targets, strict loading.

Each override names the upstream code it works around (transformers' ``trainer.py``, as installed here) and
has a test in ``tests/test_trainer.py`` (the checkpoint check: ``tests/test_resume_errors.py``) that fails
without it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.nn import functional as F
from transformers import Trainer, TrainerCallback

from .averaging import load_weights
from .outputs import weights_problem
from .pipeline import FeaturePipeline

logger = logging.getLogger(__name__)


class VocalSoundTrainer(Trainer):
    """``Trainer`` that makes AST features on the device and trains with cross-entropy on (soft) targets.

    Augmentations apply when the model is in training mode, i.e. to the training split only.
    """

    # compute_loss returns the batch mean. Left as None, the Trainer infers "already scaled for gradient
    # accumulation" from the model's forward taking **kwargs (trainer.py:2111-2117, which AST's does) and
    # would then skip dividing by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, features: FeaturePipeline, **kwargs):
        super().__init__(*args, **kwargs)
        self.features = features

    # The batch holds waveforms, not input_values, and mixup gives soft targets, which AST's own loss takes
    # as class ids (single_label_classification flattens them) or, without a problem_type, as multi-label BCE;
    # the recipe's loss is cross-entropy on the soft targets.
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Features in float32 even under bf16/fp16 autocast: the log-mel needs the precision.
        with torch.autocast(device_type=self.accelerator.device.type, enabled=False):
            input_values, targets = self.features(inputs, self.model.config.num_labels, model.training)
        outputs = model(input_values=input_values)
        loss = F.cross_entropy(outputs.logits.float(), targets)
        return (loss, outputs) if return_outputs else loss

    # save_pretrained writes AST's original key layout, but the Trainer reloads checkpoints with a raw,
    # non-strict load_state_dict (trainer.py:3703 for resuming, trainer.py:3832 for the best model): every
    # transformer block is silently left as it was, with only a "missing keys" warning. from_pretrained maps
    # the layout, and the load is then strict. DeepSpeed and FSDP keep their own formats and loaders.
    # A weights file cut short fails upstream with safetensors' "incomplete metadata", naming no file; the
    # check names the checkpoint and the file (train_hf.py checks the whole checkpoint before this).
    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        problem = weights_problem(resume_from_checkpoint)
        if problem:
            raise ValueError(f"cannot resume from {resume_from_checkpoint}: {problem}")
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

    # push_to_hub calls create_model_card (trainer.py:4413), which overwrites output_dir/README.md with the
    # Trainer's generic card (trainer.py:4311-4336); keep the VocalSound card train_hf.py wrote before.
    def create_model_card(self, *args, **kwargs):
        if not (Path(self.args.output_dir) / "README.md").is_file():
            super().create_model_card(*args, **kwargs)


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
