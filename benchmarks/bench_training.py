"""Training: clips/s of training steps, and the time of the feature pipeline alone per step.

The tiny224 and base384 presets at 512 frames, stride 10, on the CPU, and on a GPU when there is one (there
in fp32 and under bf16 autocast, as ``--bf16`` training runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

from benchmarks.common import noise_clips
from vocalsound_hf.models.build import build_ast
from vocalsound_hf.release import PAPER_NORM_MEAN, PAPER_NORM_STD
from vocalsound_hf.training.pipeline import FeaturePipeline

NUM_LABELS = 6
# On a GPU every preset runs one larger batch size, enough steps for a stable rate.
GPU_BATCH_SIZE, GPU_STEPS = 16, 10


def _seconds_per_call(function: Callable[[], object], steps: int, device: str) -> float:
    function()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        function()
    if device == "cuda":
        torch.cuda.synchronize()  # kernels run asynchronously: time them to the end
    return (time.perf_counter() - start) / steps


def train_step_timings(
    model_size: str, batch_size: int, steps: int, device: str, bf16: bool = False
) -> tuple[float, float]:
    """Clips/s of full training steps, and seconds per step of their feature pipeline alone.

    A step is what ``VocalSoundTrainer`` does per batch, without the Trainer around it: features from padded
    waveforms on the device with the recipe's augmentations (mixup 0.5, SpecAugment 48/192), cross-entropy on
    the soft targets, backward and an Adam step, as in the original recipe. With ``bf16`` the model runs under
    bf16 autocast and the features in float32, as ``--bf16`` training does.
    """
    torch.manual_seed(0)
    model = build_ast(model_size=model_size, input_tdim=512).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, betas=(0.95, 0.999), weight_decay=5e-7)
    pipeline = FeaturePipeline(
        PAPER_NORM_MEAN, PAPER_NORM_STD, max_length=512, freqm=48, timem=192, mixup=0.5
    )
    clips = noise_clips(batch_size, seed=1)
    batch = {
        "waveforms": torch.nn.utils.rnn.pad_sequence(clips, batch_first=True).to(device),
        "lengths": torch.tensor([len(c) for c in clips], device=device),
        "labels": torch.arange(batch_size, device=device) % NUM_LABELS,
    }

    def features():
        return pipeline(batch, num_labels=NUM_LABELS, training=True)

    def step():
        input_values, targets = features()
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_values=input_values).logits
        loss = F.cross_entropy(logits.float(), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return batch_size / _seconds_per_call(step, steps, device), _seconds_per_call(features, steps, device)


def bench_training(settings: dict) -> dict:
    result = {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for model_size, (batch_size, steps) in settings["train"].items():
            if device == "cuda":
                batch_size, steps = GPU_BATCH_SIZE, GPU_STEPS
            key = f"{device}_{model_size}"
            clips_per_s, features_s = train_step_timings(model_size, batch_size, steps, device)
            result[f"{key}_clips_per_s"] = clips_per_s
            result[f"{key}_features_ms_per_step"] = 1e3 * features_s
            result[f"{key}_batch_size"] = batch_size
            result[f"{key}_steps"] = steps
            if device == "cuda":  # --bf16 training is a GPU setting
                result[f"{key}_bf16_clips_per_s"], _ = train_step_timings(
                    model_size, batch_size, steps, device, bf16=True
                )
    if torch.cuda.is_available():
        result["gpu"] = torch.cuda.get_device_name()
    return result
