"""Inference: latency of AST base at 512 frames, batch 1, and the fast path's top-1 agreement with fp32.

p50/p90 of the model's forward pass for transformers fp32 (eager and sdpa attention) and the demo's fast path
(``AudioClassifier.from_pretrained(..., fast=True)``: int8 linear layers, bf16 attention), on the same
features, in alternating blocks. Agreement is measured on weights with real structure: the synthetic AudioSet
checkpoint (``build_ast(audioset_pretrain=..., head="audioset")``, positional grid adapted to 512 frames, the
six VocalSound rows of its AudioSet head) over the decodable clips of a synthetic release, and on the
quickstart-trained model when there is one.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import ASTForAudioClassification

from benchmarks.common import audioset_model_dir, release_clips
from vocalsound_hf.inference.classifier import AudioClassifier

# Alternating blocks per model: load drift over the run hits every model alike.
LATENCY_ROUNDS = 4
AGREEMENT_BATCH_SIZE = 8
MODEL = "AST base384, stride 10, 512 frames, synthetic AudioSet weights (6 VocalSound rows)"


def latencies(models: dict, features: torch.Tensor, iterations: int) -> dict[str, list[float]]:
    """Seconds per forward pass of each model, in ``LATENCY_ROUNDS`` alternating blocks.

    Each block repeats one model, as a server repeats its one model, after a warm-up call (the first call
    allocates and packs weights).
    """
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for _ in range(LATENCY_ROUNDS):
            for name, model in models.items():
                model(input_values=features)
                for _ in range(max(1, iterations // LATENCY_ROUNDS)):
                    start = time.perf_counter()
                    model(input_values=features)
                    times[name].append(time.perf_counter() - start)
    return times


def top1_agreement(reference, candidate, features: torch.Tensor, label: str) -> float:
    """The share of clips whose top-1 class the two models agree on."""
    agree = 0
    # The one progress bar a run shows (run.py sets TQDM_DISABLE): a full run's agreement check takes most of it.
    bar = tqdm(total=len(features), desc=label, unit="clip", disable=False)
    with torch.inference_mode(), bar:
        for chunk in features.split(AGREEMENT_BATCH_SIZE):
            a = reference(input_values=chunk).logits.argmax(-1)
            b = candidate(input_values=chunk).logits.argmax(-1)
            agree += int((a == b).sum())
            bar.update(len(chunk))
    return agree / len(features)


def _quickstart_agreement(quickstart_model: Path, clips: list[torch.Tensor]) -> float:
    reference = AudioClassifier.from_pretrained(quickstart_model, fast=False, device="cpu")
    candidate = AudioClassifier.from_pretrained(quickstart_model, fast=True, device="cpu")
    return top1_agreement(
        reference.model, candidate.model, reference.log_mel(clips), "agreement, quickstart model"
    )


def bench_inference(settings: dict, cache_dir: Path, quickstart_model: Path | None) -> dict:
    model_dir = audioset_model_dir(cache_dir)
    eager = ASTForAudioClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    sdpa = ASTForAudioClassification.from_pretrained(model_dir, attn_implementation="sdpa").eval()
    fast = AudioClassifier.from_pretrained(model_dir, fast=True, device="cpu")

    clips = release_clips(cache_dir, settings["release_speakers"])
    if settings["agreement_clips"] is not None:
        clips = clips[: settings["agreement_clips"]]
    features = fast.log_mel(clips)
    models = {"fp32_eager": eager, "fp32_sdpa": sdpa, "fast": fast.model}
    result = {}
    for name, times in latencies(models, features[:1], settings["latency_iterations"]).items():
        # numpy's default percentile: linear interpolation between the closest ranks.
        result[f"{name}_p50_s"], result[f"{name}_p90_s"] = map(float, np.percentile(times, [50, 90]))
    result["fast_speedup_vs_fp32_sdpa_p50"] = result["fp32_sdpa_p50_s"] / result["fast_p50_s"]
    result["fast_top1_agreement"] = top1_agreement(sdpa, fast.model, features, "agreement, AudioSet weights")
    result["agreement_clips"] = len(features)
    result["latency_iterations"] = settings["latency_iterations"]
    result["model"] = MODEL
    if quickstart_model is not None:
        result["quickstart_fast_top1_agreement"] = _quickstart_agreement(quickstart_model, clips)
        result["quickstart_model"] = str(quickstart_model)
    return result
