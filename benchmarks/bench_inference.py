"""Inference: latency of AST base at 512 frames, batch 1, and each fast path's top-1 agreement with fp32.

Side by side on the same features, in alternating blocks: transformers fp32 (eager and sdpa attention), the
demo's fast path (``AudioClassifier.from_pretrained(..., fast=True)``: int8 linear layers, bf16 attention)
and ONNX Runtime running ``export_onnx``'s fp32 and int8 graphs (``bench_onnx``), on as many threads as
torch. Then the same with the other core kept busy by a second process. Agreement is measured on weights
with real structure: the synthetic AudioSet checkpoint (``build_ast(audioset_pretrain=..., head="audioset")``,
positional grid adapted to 512 frames, the six VocalSound rows of its AudioSet head) over the decodable clips
of a synthetic release, and on the quickstart-trained model when there is one. Batch dependence: how far a
clip's logits move between running alone and running in a batch of different clips.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import ASTForAudioClassification

from benchmarks.bench_onnx import (
    batch_dependence,
    busy_core,
    head_is_fp32,
    onnx_export,
    onnx_path,
    quantize_int8_head_fp32,
    torch_path,
)
from benchmarks.common import audioset_model_dir, release_clips
from vocalsound_hf.inference.classifier import AudioClassifier
from vocalsound_hf.inference.windows import WINDOW_BATCH_SIZE

# Alternating blocks per path (at most one per timed run): load drift over the run hits every path alike.
LATENCY_ROUNDS = 4
# As serving batches a recording's windows; ONNX Runtime int8's activation scale is per batch, so the batch
# size is part of what its agreement measures.
AGREEMENT_BATCH_SIZE = WINDOW_BATCH_SIZE
REFERENCE = "fp32_sdpa"
# The bar for a faster path to replace fp32 in serving.
AGREEMENT_BAR = 0.99
CANDIDATES = ("fast", "onnx_fp32", "onnx_int8")
# Timed again with the other core busy; eager attention only ever loses to sdpa, so it is timed idle only.
BUSY_PATHS = (REFERENCE, *CANDIDATES)
MODEL = "AST base384, stride 10, 512 frames, synthetic AudioSet weights (6 VocalSound rows)"


def latencies(paths: dict, features: torch.Tensor, iterations: int) -> dict[str, list[float]]:
    """Seconds per forward pass of each path, in ``LATENCY_ROUNDS`` alternating blocks.

    Each block repeats one path, as a server repeats its one model, after a warm-up call (the first call
    allocates and packs weights; onnxruntime's first call also plans its memory).
    """
    times: dict[str, list[float]] = {name: [] for name in paths}
    rounds = min(LATENCY_ROUNDS, iterations)
    for _ in range(rounds):
        for name, path in paths.items():
            path(features)
            for _ in range(max(1, iterations // rounds)):
                start = time.perf_counter()
                path(features)
                times[name].append(time.perf_counter() - start)
    return times


def percentiles(times: dict[str, list[float]], prefix: str = "") -> dict[str, float]:
    result = {}
    for name, values in times.items():
        # numpy's default percentile: linear interpolation between the closest ranks.
        result[f"{prefix}{name}_p50_s"], result[f"{prefix}{name}_p90_s"] = map(
            float, np.percentile(values, [50, 90])
        )
    return result


def all_logits(path, features: torch.Tensor, label: str) -> torch.Tensor:
    """The path's logits of every clip, in batches of ``AGREEMENT_BATCH_SIZE``."""
    # The one progress bar kind a run shows (run.py sets TQDM_DISABLE): the agreement checks take most of a run.
    with tqdm(total=len(features), desc=label, unit="clip", disable=False) as bar:
        chunks = []
        for chunk in features.split(AGREEMENT_BATCH_SIZE):
            chunks.append(path(chunk).float())
            bar.update(len(chunk))
    return torch.cat(chunks)


def agreements(
    paths: dict, fp32_graph: Path, features: torch.Tensor, weights: str, prefix: str = "", fp32_every: int = 1
) -> dict[str, float]:
    """Each candidate's share of clips whose top-1 class it shares with the reference, and ONNX fp32's
    largest logit difference from it.

    ONNX Runtime fp32 runs on every ``fp32_every``-th clip only: it checks an export that matches fp32 to
    float rounding, and over every clip of the default release it would add the most time of any path. Where the int8 graph falls short of ``AGREEMENT_BAR``, the same quantization with the classifier head left
    fp32 (``onnx_int8_head_fp32``, from ``fp32_graph``) is measured too.
    """
    reference = all_logits(paths[REFERENCE], features, f"{REFERENCE}, {weights}")
    result = {}

    def agreement(name: str, path) -> float:
        clips = slice(None, None, fp32_every if name == "onnx_fp32" else 1)
        logits, expected = all_logits(path, features[clips], f"{name}, {weights}"), reference[clips]
        if name == "onnx_fp32":
            result[f"{prefix}onnx_fp32_max_abs_logit_diff"] = float((logits - expected).abs().max())
            result[f"{prefix}onnx_fp32_agreement_clips"] = len(logits)
        return float((logits.argmax(-1) == expected.argmax(-1)).float().mean())

    for name in CANDIDATES:
        result[f"{prefix}{name}_top1_agreement"] = agreement(name, paths[name])
    if result[f"{prefix}onnx_int8_top1_agreement"] < AGREEMENT_BAR:
        with tempfile.TemporaryDirectory() as tmp:
            graph = quantize_int8_head_fp32(fp32_graph, Path(tmp) / "head_fp32.onnx")
            path = onnx_path(graph, torch.get_num_threads())
            result[f"{prefix}onnx_int8_head_fp32_top1_agreement"] = agreement("onnx_int8_head_fp32", path)
    return result


def _onnx_paths(model_dir: Path, export_dir: Path) -> tuple[dict, tuple[Path, Path]]:
    """ONNX Runtime's paths of ``model_dir`` exported into ``export_dir``, and the fp32 and int8 graphs."""
    graphs = onnx_export(model_dir, export_dir)
    threads = torch.get_num_threads()
    return {"onnx_fp32": onnx_path(graphs[0], threads), "onnx_int8": onnx_path(graphs[1], threads)}, graphs


def _quickstart(quickstart_model: Path, clips: list[torch.Tensor]) -> dict:
    reference = AudioClassifier.from_pretrained(quickstart_model, fast=False, device="cpu")
    fast = AudioClassifier.from_pretrained(quickstart_model, fast=True, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:  # the model may be retrained: exported afresh every run
        paths = {REFERENCE: torch_path(reference.model), "fast": torch_path(fast.model)}
        onnx_paths, (fp32_graph, _) = _onnx_paths(quickstart_model, Path(tmp) / "onnx")
        features = reference.log_mel(clips)
        result = agreements(
            paths | onnx_paths, fp32_graph, features, "quickstart model", prefix="quickstart_"
        )
    return result | {"quickstart_model": str(quickstart_model), "quickstart_agreement_clips": len(clips)}


def _spread(features: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` clips spread over the release (its neighbours by name are often one speaker's)."""
    return features[torch.linspace(0, len(features) - 1, count).round().long().unique()]


def _progress(result: dict) -> None:
    """The figures so far, on stderr: the full section runs for most of an hour."""
    print(f"[bench] inference so far: {json.dumps(result)}", file=sys.stderr, flush=True)


def _setup(
    settings: dict, cache_dir: Path
) -> tuple[dict, tuple[Path, Path], list[torch.Tensor], torch.Tensor]:
    """Every path on the synthetic AudioSet weights, the ONNX graphs, the release's clips and their features."""
    model_dir = audioset_model_dir(cache_dir)
    eager = ASTForAudioClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    sdpa = ASTForAudioClassification.from_pretrained(model_dir, attn_implementation="sdpa").eval()
    fast = AudioClassifier.from_pretrained(model_dir, fast=True, device="cpu")
    paths = {"fp32_eager": torch_path(eager), REFERENCE: torch_path(sdpa), "fast": torch_path(fast.model)}
    onnx_paths, graphs = _onnx_paths(model_dir, cache_dir / "ast_synthetic_audioset_512_onnx")
    clips = release_clips(cache_dir, settings["release_speakers"])
    if settings["agreement_clips"] is not None:
        clips = clips[: settings["agreement_clips"]]
    return paths | onnx_paths, graphs, clips, fast.log_mel(clips)


def measure_latencies(paths: dict, features: torch.Tensor, settings: dict) -> dict:
    """p50/p90 of every path at batch 1, idle and with the other core busy, and each path's batch dependence."""
    iterations = settings["latency_iterations"]
    result = percentiles(latencies(paths, features[:1], iterations))
    with busy_core():
        busy = latencies({name: paths[name] for name in BUSY_PATHS}, features[:1], iterations)
    result |= percentiles(busy, prefix="busy_")
    for prefix in ("", "busy_"):
        for name in CANDIDATES:
            result[f"{prefix}{name}_speedup_vs_fp32_sdpa_p50"] = (
                result[f"{prefix}fp32_sdpa_p50_s"] / result[f"{prefix}{name}_p50_s"]
            )
    batch = _spread(features, settings["batch_dependence_clips"])
    for name in BUSY_PATHS:
        result[f"{name}_batch_max_abs_logit_diff"] = batch_dependence(paths[name], batch)
    return result | {"batch_dependence_clips": len(batch), "latency_iterations": iterations}


def measure_agreements(
    paths: dict, graphs: tuple[Path, Path], features: torch.Tensor, settings: dict, every: int = 1
) -> dict:
    """Top-1 agreement with fp32 on the synthetic AudioSet weights, over every ``every``-th clip."""
    features = features[::every]
    result = agreements(
        paths, graphs[0], features, "AudioSet weights", fp32_every=settings["onnx_fp32_every"]
    )
    return result | {
        "onnx_int8_head_fp32": head_is_fp32(graphs[1]),
        "agreement_clips": len(features),
        "agreement_every": every,
    }


def bench_inference(
    settings: dict, cache_dir: Path, quickstart_model: Path | None, agreement_every: int = 1
) -> dict:
    """The inference section; agreement on the AudioSet weights over every ``agreement_every``-th clip."""
    paths, graphs, clips, features = _setup(settings, cache_dir)
    result = measure_latencies(paths, features, settings)
    _progress(result)
    result |= measure_agreements(paths, graphs, features, settings, agreement_every)
    result["model"] = MODEL
    if quickstart_model is not None:
        _progress(result)
        result |= _quickstart(quickstart_model, clips)
    return result
