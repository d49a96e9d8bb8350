"""The benchmark suite: features, inference and training throughput, every comparison measured in one run.

    python benchmarks/run.py [--quick] [--threads 2] [--quickstart-model DIR] [--cache-dir DIR]

Writes ``benchmarks/results.json``, prints a Markdown table and puts the same table between the
``<!-- bench:start -->`` and ``<!-- bench:end -->`` markers of ``BENCHMARKS.md`` (only that block is
replaced). ``--quick`` uses fewer clips and iterations, for under 2 minutes on an otherwise idle 2-core
machine once the synthetic checkpoint is cached (its first generation, ~350 MB, adds about a minute); the full
run takes about 40 minutes, most of it the agreement check over every clip of the default synthetic release.

1. Features: clips/s over one batch of 2-8 s clips, ``batch_fbank`` vs ``ASTFeatureExtractor`` (as installed
   here, with torchaudio, and with its numpy fallback for where torchaudio is not installed) vs a per-clip
   ``torchaudio.compliance.kaldi.fbank`` loop, interleaved repetitions, median; on a GPU machine also
   ``batch_fbank`` on the GPU (clips already there). Per frame: ``batch_fbank``'s time by step (profiled), and
   what 5x the extractor leaves.
2. Inference, AST base at 512 frames, batch 1, on ``--threads`` threads: p50/p90 latency of the model's
   forward pass for transformers fp32 (eager and sdpa attention) and the demo's fast path
   (``AudioClassifier.from_pretrained(..., fast=True)``: int8 linear layers, bf16 attention), on the same
   features, in alternating blocks. Top-1 agreement of the fast path with fp32 sdpa is measured on weights with
   real structure: the synthetic AudioSet checkpoint of ``../shared/reference/ast``
   (``build_ast(audioset_pretrain=..., head="audioset")``, positional grid adapted to 512 frames, the six
   VocalSound rows of its AudioSet head) over every decodable clip of the default synthetic release (a
   12-speaker one with ``--quick``), and on the quickstart-trained model when there is one.
3. Training: clips/s of training steps (features with the recipe's augmentations, forward, backward, Adam)
   for the tiny224 and base384 presets on the CPU, and on a GPU when there is one (there in fp32 and under
   bf16 autocast), with the time of the feature pipeline alone per step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

REFERENCE_AST = REPO.parent / "shared" / "reference" / "ast"
RESULTS_JSON = REPO / "benchmarks" / "results.json"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
START_MARKER, END_MARKER = "<!-- bench:start -->", "<!-- bench:end -->"
DEFAULT_QUICKSTART_MODEL = REPO / "outputs" / "quickstart" / "model"

# (full, quick) sizes of every measurement.
SETTINGS = {
    "full": {
        "feature_clips": 64,
        "feature_repeats": 7,
        "latency_iterations": 40,
        "release_speakers": None,  # the default synthetic release (300 speakers)
        "agreement_clips": None,  # every decodable clip of the release
        "train": {"tiny224": (8, 3), "base384": (2, 2)},  # (batch size, timed steps)
    },
    "quick": {
        "feature_clips": 32,
        "feature_repeats": 3,
        "latency_iterations": 4,
        "release_speakers": 12,
        "agreement_clips": 8,
        "train": {"tiny224": (2, 1), "base384": (1, 1)},
    },
}


def _clips(count: int, seed: int, min_s: float = 2.0, max_s: float = 8.0):
    """``count`` seeded noise clips of 2-8 s at 16 kHz (content does not change the cost of any step)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(int(min_s * 16000), int(max_s * 16000) + 1, (count,), generator=generator)
    return [0.1 * torch.randn(int(n), generator=generator) for n in lengths]


def _interleaved_medians(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved so that load changes hit all alike."""
    for function in functions.values():
        function()  # warm-up: caches, lazy imports, allocator
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _numpy_backend():
    """Run ``ASTFeatureExtractor`` as it runs where torchaudio is not installed: its numpy fbank."""
    from unittest import mock

    from transformers.models.audio_spectrogram_transformer import (
        feature_extraction_audio_spectrogram_transformer as module,
    )

    return mock.patch.object(module, "is_speech_available", lambda: False)


# ``batch_fbank``'s steps, by the aten operations that run them on a CPU.
_FBANK_STEPS = {
    "aten::_fft_r2c": "fft",
    "aten::pow_": "mel",  # the squares, which the mel products sum
    "aten::mm": "mel",
    "aten::clamp_min_": "log",  # Kaldi's floor at float32 epsilon, then the log
    "aten::log_": "log",
    "aten::mean": "framing",  # DC removal, pre-emphasis, window; the normalisation
    "aten::sub": "framing",
    "aten::mul": "framing",
    "aten::mul_": "framing",
    "aten::div_": "framing",
}


def _fbank_profile(call: Callable[[], object], frames: int, calls: int = 5) -> dict[str, float]:
    """Microseconds per frame of ``call`` (a CPU ``batch_fbank`` of ``frames`` frames) by step: each step's
    operations' own time over ``calls`` back-to-back profiled calls, and the rest of the median unprofiled one."""
    from torch.profiler import ProfilerActivity, profile

    call()  # warm-up
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(calls):
            call()
    steps = dict.fromkeys(_FBANK_STEPS.values(), 0.0)
    for event in profiler.key_averages():
        if event.key in _FBANK_STEPS:
            steps[_FBANK_STEPS[event.key]] += event.self_cpu_time_total / calls / frames  # microseconds
    back_to_back = 1e6 * statistics.median(seconds) / frames
    steps["other"] = back_to_back - sum(steps.values())
    steps["back_to_back"] = back_to_back
    return {f"{step}_us_per_frame": value for step, value in steps.items()}


def bench_features(settings: dict) -> dict:
    import torch
    import torchaudio.compliance.kaldi as kaldi

    from vocalsound_hf.features import batch_fbank, make_feature_extractor, num_frames

    clips = _clips(settings["feature_clips"], seed=0)
    arrays = [clip.numpy() for clip in clips]
    extractor = make_feature_extractor(max_length=512)
    with _numpy_backend(), warnings.catch_warnings():
        # Kaldi's mel band 3 holds no FFT bin at 128 bands; the numpy filter builder warns about it.
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        numpy_extractor = make_feature_extractor(max_length=512)  # builds its numpy mel filters

    def numpy_extract():
        with _numpy_backend():
            return numpy_extractor(arrays, sampling_rate=16000, return_tensors="pt")

    functions = {
        "batch_fbank": lambda: batch_fbank(clips, max_length=512),
        "ast_feature_extractor": lambda: extractor(arrays, sampling_rate=16000, return_tensors="pt"),
        "ast_feature_extractor_numpy": numpy_extract,
        "kaldi_loop": lambda: [
            kaldi.fbank(clip[None], window_type="hanning", num_mel_bins=128) for clip in clips
        ],
    }
    if torch.cuda.is_available():
        gpu_clips = [clip.cuda() for clip in clips]

        def gpu_batch_fbank():
            features = batch_fbank(gpu_clips, max_length=512)
            torch.cuda.synchronize()  # kernels run asynchronously: time them to the end
            return features

        functions["batch_fbank_cuda"] = gpu_batch_fbank
    seconds = _interleaved_medians(functions, settings["feature_repeats"])
    result = {f"{name}_clips_per_s": len(clips) / s for name, s in seconds.items()}
    result["batch_fbank_speedup_vs_ast_feature_extractor"] = (
        seconds["ast_feature_extractor"] / seconds["batch_fbank"]
    )
    if "batch_fbank_cuda" in seconds:
        result["batch_fbank_cuda_speedup_vs_ast_feature_extractor"] = (
            seconds["ast_feature_extractor"] / seconds["batch_fbank_cuda"]
        )
    result["batch_fbank_speedup_vs_ast_feature_extractor_numpy"] = (
        seconds["ast_feature_extractor_numpy"] / seconds["batch_fbank"]
    )
    result["batch_fbank_speedup_vs_kaldi_loop"] = seconds["kaldi_loop"] / seconds["batch_fbank"]
    # Per frame, against what 5x the extractor leaves: the frames are those the output keeps (at most 512).
    frames = sum(min(num_frames(len(clip)), 512) for clip in clips)
    result["frames"] = frames
    result["batch_fbank_us_per_frame"] = 1e6 * seconds["batch_fbank"] / frames
    result["budget_5x_us_per_frame"] = 1e6 * seconds["ast_feature_extractor"] / 5 / frames
    result |= _fbank_profile(functions["batch_fbank"], frames)
    result["clips"] = len(clips)
    result["repeats"] = settings["feature_repeats"]
    return result


def _synthetic_audioset_checkpoint(cache_dir: Path) -> Path:
    """The stride-10 synthetic AudioSet checkpoint, generated (and checked against its SHA-256s) once."""
    path = cache_dir / "audioset_synthetic_10_10.pth"
    if not path.is_file():
        tmp = path.with_name(path.name + ".partial")
        subprocess.run(
            [
                sys.executable,
                str(REFERENCE_AST / "make_synthetic_audioset_checkpoint.py"),
                "--keys",
                str(REFERENCE_AST / "synthetic_audioset_keys.json"),
                "--out",
                str(tmp),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        os.replace(tmp, path)
    return path


def _audioset_model_dir(cache_dir: Path) -> Path:
    """AST base from the synthetic AudioSet checkpoint, adapted to 512 frames, with its six VocalSound rows."""
    from vocalsound_hf.features import make_feature_extractor
    from vocalsound_hf.models.build import build_ast
    from vocalsound_hf.models.model_dir import save_model_dir

    model_dir = cache_dir / "ast_synthetic_audioset_512"
    if not (model_dir / "config.json").is_file():
        model = build_ast(
            audioset_pretrain=str(_synthetic_audioset_checkpoint(cache_dir)), head="audioset", input_tdim=512
        )
        save_model_dir(model, make_feature_extractor(max_length=512), model_dir)
    return model_dir


def _release_clips(cache_dir: Path, num_speakers: int | None) -> list:
    """Every decodable clip of a synthetic release (its deliberately broken files are skipped), by name.

    ``num_speakers=None`` is the default release, the one ``vocalsound-hf synth`` makes.
    """
    import soundfile as sf
    import torch

    from vocalsound_hf.data.synth_release import make_synthetic_release

    root = cache_dir / f"synthetic_release_{num_speakers or 'default'}"
    if not root.is_dir():
        make_synthetic_release(root, sampling_rate=16000, num_speakers=num_speakers, seed=0)
    clips = []
    for path in sorted(root.rglob("*.wav")):
        try:
            audio, rate = sf.read(path, dtype="float32")
        except (RuntimeError, sf.LibsndfileError):
            continue
        if rate == 16000 and audio.ndim == 1 and len(audio) >= 400:
            clips.append(torch.from_numpy(audio))
    return clips


def _latencies(models: dict, features, iterations: int, rounds: int = 4) -> dict[str, list[float]]:
    """Seconds per forward pass of each model, in ``rounds`` alternating blocks so that load drift hits all alike.

    Each block repeats one model, as a server repeats its one model, after a warm-up call (the first call
    allocates and packs weights).
    """
    import torch

    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, model in models.items():
                model(input_values=features)
                for _ in range(max(1, iterations // rounds)):
                    start = time.perf_counter()
                    model(input_values=features)
                    times[name].append(time.perf_counter() - start)
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _top1_agreement(reference, candidate, features, label: str, batch_size: int = 8) -> float:
    import torch
    from tqdm.auto import tqdm

    agree = 0
    with torch.inference_mode(), tqdm(total=len(features), desc=label, unit="clip", disable=False) as bar:
        for chunk in features.split(batch_size):
            a = reference(input_values=chunk).logits.argmax(-1)
            b = candidate(input_values=chunk).logits.argmax(-1)
            agree += int((a == b).sum())
            bar.update(len(chunk))
    return agree / len(features)


def bench_inference(settings: dict, cache_dir: Path, quickstart_model: Path | None) -> dict:
    from transformers import ASTForAudioClassification

    from vocalsound_hf.inference.classifier import AudioClassifier

    model_dir = _audioset_model_dir(cache_dir)
    eager = ASTForAudioClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    sdpa = ASTForAudioClassification.from_pretrained(model_dir, attn_implementation="sdpa").eval()
    fast = AudioClassifier.from_pretrained(model_dir, fast=True, device="cpu")

    clips = _release_clips(cache_dir, settings["release_speakers"])
    if settings["agreement_clips"] is not None:
        clips = clips[: settings["agreement_clips"]]
    features = fast.log_mel(clips)
    models = {"fp32_eager": eager, "fp32_sdpa": sdpa, "fast": fast.model}
    result = {}
    for name, times in _latencies(models, features[:1], settings["latency_iterations"]).items():
        result[f"{name}_p50_s"] = _percentile(times, 0.5)
        result[f"{name}_p90_s"] = _percentile(times, 0.9)
    result["fast_speedup_vs_fp32_sdpa_p50"] = result["fp32_sdpa_p50_s"] / result["fast_p50_s"]
    result["fast_top1_agreement"] = _top1_agreement(sdpa, fast.model, features, "agreement, AudioSet weights")
    result["agreement_clips"] = len(features)
    result["latency_iterations"] = settings["latency_iterations"]
    result["model"] = "AST base384, stride 10, 512 frames, synthetic AudioSet weights (6 VocalSound rows)"

    if quickstart_model is not None:
        reference = AudioClassifier.from_pretrained(quickstart_model, fast=False, device="cpu")
        candidate = AudioClassifier.from_pretrained(quickstart_model, fast=True, device="cpu")
        quickstart_features = reference.log_mel(clips)
        result["quickstart_fast_top1_agreement"] = _top1_agreement(
            reference.model, candidate.model, quickstart_features, "agreement, quickstart model"
        )
        result["quickstart_model"] = str(quickstart_model)
    return result


def _train_step_timings(
    model_size: str, batch_size: int, steps: int, device: str, bf16: bool = False
) -> tuple[float, float]:
    """Clips/s of full training steps, and seconds per step of their feature pipeline alone.

    A step is what ``VocalSoundTrainer`` does per batch, without the Trainer around it: features from padded
    waveforms on the device with the recipe's augmentations (mixup 0.5, SpecAugment 48/192), cross-entropy on
    the soft targets, backward and an Adam step, as in the original recipe. With ``bf16`` the model runs under
    bf16 autocast and the features in float32, as ``--bf16`` training does.
    """
    import torch
    from torch.nn import functional as F

    from vocalsound_hf.models.build import build_ast
    from vocalsound_hf.release import PAPER_NORM_MEAN, PAPER_NORM_STD
    from vocalsound_hf.training import FeaturePipeline

    torch.manual_seed(0)
    model = build_ast(model_size=model_size, input_tdim=512).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, betas=(0.95, 0.999), weight_decay=5e-7)
    pipeline = FeaturePipeline(
        PAPER_NORM_MEAN, PAPER_NORM_STD, max_length=512, freqm=48, timem=192, mixup=0.5
    )
    clips = _clips(batch_size, seed=1)
    batch = {
        "waveforms": torch.nn.utils.rnn.pad_sequence(clips, batch_first=True).to(device),
        "lengths": torch.tensor([len(c) for c in clips], device=device),
        "labels": torch.arange(batch_size, device=device) % 6,
    }

    def features():
        return pipeline(batch, num_labels=6, training=True)

    def step():
        input_values, targets = features()
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_values=input_values).logits
        loss = F.cross_entropy(logits.float(), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def seconds_per_call(function: Callable[[], object]) -> float:
        function()  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            function()
        if device == "cuda":
            torch.cuda.synchronize()  # kernels run asynchronously: time them to the end
        return (time.perf_counter() - start) / steps

    return batch_size / seconds_per_call(step), seconds_per_call(features)


def bench_training(settings: dict) -> dict:
    import torch

    result = {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for model_size, (batch_size, steps) in settings["train"].items():
            if device == "cuda":
                batch_size, steps = 16, 10
            key = f"{device}_{model_size}"
            clips_per_s, features_s = _train_step_timings(model_size, batch_size, steps, device)
            result[f"{key}_clips_per_s"] = clips_per_s
            result[f"{key}_features_ms_per_step"] = 1e3 * features_s
            result[f"{key}_batch_size"] = batch_size
            result[f"{key}_steps"] = steps
            if device == "cuda":  # --bf16 training is a GPU setting
                result[f"{key}_bf16_clips_per_s"], _ = _train_step_timings(
                    model_size, batch_size, steps, device, bf16=True
                )
    if torch.cuda.is_available():
        result["gpu"] = torch.cuda.get_device_name()
    return result


def markdown_table(results: dict) -> str:
    """The results as the Markdown block of BENCHMARKS.md."""
    machine, features, inference, training = (
        results["machine"],
        results["features"],
        results["inference"],
        results["training"],
    )
    lines = [
        f"Measured {results['date']} on {machine['cpu_count']} CPU cores ({machine['processor']}), "
        f"torch {machine['torch']}, {machine['threads']} threads, `{results['command']}`; load average "
        f"{machine['load_average_1min_at_start']:.1f} at the start, {machine['load_average_1min_at_end']:.1f} "
        "at the end (other work on the machine slows every figure; the ratios are measured side by side).",
        "",
        f"**Features**, one batch of {features['clips']} clips of 2-8 s, median of {features['repeats']} "
        "interleaved runs:",
        "",
        "| extractor | clips/s | batch_fbank is |",
        "|---|---:|---:|",
        f"| `batch_fbank` | {features['batch_fbank_clips_per_s']:.0f} | |",
        f"| `ASTFeatureExtractor` (torchaudio installed: its `kaldi.fbank`) | "
        f"{features['ast_feature_extractor_clips_per_s']:.0f} | "
        f"{features['batch_fbank_speedup_vs_ast_feature_extractor']:.1f}x faster |",
        f"| `ASTFeatureExtractor` (no torchaudio: its numpy fbank) | "
        f"{features['ast_feature_extractor_numpy_clips_per_s']:.0f} | "
        f"{features['batch_fbank_speedup_vs_ast_feature_extractor_numpy']:.1f}x faster |",
        f"| `kaldi.fbank` loop | {features['kaldi_loop_clips_per_s']:.0f} | "
        f"{features['batch_fbank_speedup_vs_kaldi_loop']:.1f}x faster |",
    ]
    if "batch_fbank_cuda_clips_per_s" in features:
        lines.append(
            f"| `batch_fbank` on the GPU ({machine['gpu']}), clips already there | "
            f"{features['batch_fbank_cuda_clips_per_s']:.0f} | "
            f"{features['batch_fbank_cuda_speedup_vs_ast_feature_extractor']:.1f}x `ASTFeatureExtractor` |"
        )
    lines += [
        "",
        f"Per frame ({features['frames']} frames): `batch_fbank` took {features['batch_fbank_us_per_frame']:.2f} "
        f"us in the interleaved runs above and {features['back_to_back_us_per_frame']:.2f} in back-to-back runs. "
        f"Of these, profiled: FFT {features['fft_us_per_frame']:.2f}, squares and mel products "
        f"{features['mel_us_per_frame']:.2f}, floored log {features['log_us_per_frame']:.2f}, framing and "
        f"normalisation {features['framing_us_per_frame']:.2f}, the rest (output and padding writes, copies, "
        f"per-operation overhead) {features['other_us_per_frame']:.2f}. 5x `ASTFeatureExtractor` would leave "
        f"{features['budget_5x_us_per_frame']:.2f} us per frame.",
        "",
        f"**Inference**, {inference['model']}, batch 1, forward pass, {inference['latency_iterations']} runs:",
        "",
        "| path | p50 (s) | p90 (s) |",
        "|---|---:|---:|",
    ]
    for name, label in (
        ("fp32_eager", "transformers fp32, eager attention"),
        ("fp32_sdpa", "transformers fp32, sdpa attention"),
        ("fast", "fast path (demo: int8 linear layers, bf16 attention)"),
    ):
        lines.append(f"| {label} | {inference[f'{name}_p50_s']:.3f} | {inference[f'{name}_p90_s']:.3f} |")
    lines += [
        "",
        # Two decimals: at one, 98.98 % would print as 99.0 % against a 99 % bar.
        f"Fast path top-1 agreement with fp32 (sdpa): {100 * inference['fast_top1_agreement']:.2f} % over "
        f"{inference['agreement_clips']} synthetic-release clips (synthetic AudioSet weights)"
        + (
            f"; {100 * inference['quickstart_fast_top1_agreement']:.2f} % with the quickstart-trained model."
            if "quickstart_fast_top1_agreement" in inference
            else "; quickstart-trained model: not found, not measured."
        ),
        "",
        "**Training**, clips/s of full steps (features with mixup and SpecAugment, forward, backward, Adam), "
        "512 frames, stride 10:",
        "",
        "| device | preset | batch | fp32 clips/s | bf16 clips/s | features alone, ms per step |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key, batch in training.items():
        if key.endswith("_batch_size"):
            run = key.removesuffix("_batch_size")
            device, model_size = run.split("_", 1)
            fp32, bf16 = training[f"{run}_clips_per_s"], training.get(f"{run}_bf16_clips_per_s")
            features_ms = training[f"{run}_features_ms_per_step"]
            step_ms = 1e3 * batch / fp32
            lines.append(
                f"| {device} | {model_size} | {batch} | {fp32:.2f} | {'-' if bf16 is None else f'{bf16:.2f}'} | "
                f"{features_ms:.1f} ({100 * features_ms / step_ms:.1f} % of the fp32 step) |"
            )
    return "\n".join(lines)


def update_benchmarks_md(table: str, path: Path = BENCHMARKS_MD) -> bool:
    """Replace the block between the bench markers of ``path``, atomically; False if the file or markers lack."""
    from vocalsound_hf.training import write_text_atomically

    if not path.is_file():
        return False
    text = path.read_text()
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start < 0 or end < start:
        return False
    write_text_atomically(path, text[: start + len(START_MARKER)] + "\n" + table + "\n" + text[end:])
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer clips and iterations: under 2 minutes")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads for every measurement (default 2)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vocalsound-hf" / "bench",
        help="where the synthetic checkpoint, converted model and release are kept between runs",
    )
    parser.add_argument(
        "--quickstart-model",
        type=Path,
        default=None,
        help=f"a quickstart-trained model directory (default: {DEFAULT_QUICKSTART_MODEL} if it exists)",
    )
    args = parser.parse_args(argv)

    # Offline, and no progress bars in the printed table's way.
    for variable, value in (("HF_HUB_OFFLINE", "1"), ("TQDM_DISABLE", "1"), ("HF_DATASETS_OFFLINE", "1")):
        os.environ.setdefault(variable, value)
    import torch
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    settings = SETTINGS["quick" if args.quick else "full"]
    quickstart = args.quickstart_model
    if quickstart is None and (DEFAULT_QUICKSTART_MODEL / "config.json").is_file():
        quickstart = DEFAULT_QUICKSTART_MODEL
    args.cache_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python benchmarks/run.py" + (" --quick" if args.quick else ""),
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            # Other work on the machine slows every measurement; the ratios, measured side by side, less so.
            "load_average_1min_at_start": os.getloadavg()[0],
        },
    }
    for name, run in (
        ("features", lambda: bench_features(settings)),
        ("inference", lambda: bench_inference(settings, args.cache_dir, quickstart)),
        ("training", lambda: bench_training(settings)),
    ):
        section_start = time.perf_counter()
        results[name] = run()
        print(f"[bench] {name}: {time.perf_counter() - section_start:.0f} s", file=sys.stderr)
    results["total_s"] = time.perf_counter() - started
    results["machine"]["load_average_1min_at_end"] = os.getloadavg()[0]

    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    from vocalsound_hf.training import write_text_atomically

    write_text_atomically(RESULTS_JSON, json.dumps(results, indent=2) + "\n")
    table = markdown_table(results)
    print(table)
    if update_benchmarks_md(table):
        print(f"\nwrote {RESULTS_JSON.relative_to(REPO)} and the table in {BENCHMARKS_MD.name}")
    else:
        print(
            f"\nwrote {RESULTS_JSON.relative_to(REPO)}; {BENCHMARKS_MD.name} or its {START_MARKER} ... "
            f"{END_MARKER} markers are missing, so the table above was not written there"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
