"""Features: clips/s of ``batch_fbank`` against ``ASTFeatureExtractor`` and a ``kaldi.fbank`` loop, per step.

One batch of 2-8 s clips, interleaved repetitions, median. ``ASTFeatureExtractor`` runs twice: as installed
here (with torchaudio, its ``kaldi.fbank``) and with its numpy fallback, what users without torchaudio get.
On a GPU machine ``batch_fbank`` also runs on the GPU, the clips already there. Per frame: ``batch_fbank``'s
time by step (profiled), and what 5x the extractor would leave.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from unittest import mock

import torch
import torchaudio.compliance.kaldi as kaldi
from torch.profiler import ProfilerActivity, profile
from transformers.models.audio_spectrogram_transformer import (
    feature_extraction_audio_spectrogram_transformer as ast_feature_extraction,
)

from benchmarks.common import interleaved_medians, noise_clips
from vocalsound_hf.features import batch_fbank, make_feature_extractor, num_frames

MAX_LENGTH = 512

# ``batch_fbank``'s steps, by the aten operations that run them on a CPU.
FBANK_STEPS = {
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


def _numpy_backend():
    """Run ``ASTFeatureExtractor`` as it runs where torchaudio is not installed: its numpy fbank."""
    return mock.patch.object(ast_feature_extraction, "is_speech_available", lambda: False)


def fbank_profile(call: Callable[[], object], frames: int, calls: int = 5) -> dict[str, float]:
    """Microseconds per frame of ``call`` (a CPU ``batch_fbank`` of ``frames`` frames) by step: each step's
    operations' own time over ``calls`` back-to-back profiled calls, and the rest of the median unprofiled one."""
    call()  # warm-up
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(calls):
            call()
    steps = dict.fromkeys(FBANK_STEPS.values(), 0.0)
    for event in profiler.key_averages():
        if event.key in FBANK_STEPS:
            steps[FBANK_STEPS[event.key]] += event.self_cpu_time_total / calls / frames  # microseconds
    back_to_back = 1e6 * statistics.median(seconds) / frames
    steps["other"] = back_to_back - sum(steps.values())
    steps["back_to_back"] = back_to_back
    return {f"{step}_us_per_frame": value for step, value in steps.items()}


def _extractors(clips: list[torch.Tensor]) -> dict[str, Callable[[], object]]:
    """The compared feature computations of one batch, by name."""
    arrays = [clip.numpy() for clip in clips]
    extractor = make_feature_extractor(max_length=MAX_LENGTH)
    with _numpy_backend(), warnings.catch_warnings():
        # Kaldi's mel band 3 holds no FFT bin at 128 bands; the numpy filter builder warns about it.
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        numpy_extractor = make_feature_extractor(max_length=MAX_LENGTH)  # builds its numpy mel filters

    def numpy_extract():
        with _numpy_backend():
            return numpy_extractor(arrays, sampling_rate=16000, return_tensors="pt")

    functions = {
        "batch_fbank": lambda: batch_fbank(clips, max_length=MAX_LENGTH),
        "ast_feature_extractor": lambda: extractor(arrays, sampling_rate=16000, return_tensors="pt"),
        "ast_feature_extractor_numpy": numpy_extract,
        "kaldi_loop": lambda: [
            kaldi.fbank(clip[None], window_type="hanning", num_mel_bins=128) for clip in clips
        ],
    }
    if torch.cuda.is_available():
        gpu_clips = [clip.cuda() for clip in clips]

        def gpu_batch_fbank():
            features = batch_fbank(gpu_clips, max_length=MAX_LENGTH)
            torch.cuda.synchronize()  # kernels run asynchronously: time them to the end
            return features

        functions["batch_fbank_cuda"] = gpu_batch_fbank
    return functions


def bench_features(settings: dict) -> dict:
    clips = noise_clips(settings["feature_clips"], seed=0)
    functions = _extractors(clips)
    seconds = interleaved_medians(functions, settings["feature_repeats"])
    result = {f"{name}_clips_per_s": len(clips) / s for name, s in seconds.items()}
    for name, baseline in (
        ("batch_fbank", "ast_feature_extractor"),
        ("batch_fbank_cuda", "ast_feature_extractor"),
        ("batch_fbank", "ast_feature_extractor_numpy"),
        ("batch_fbank", "kaldi_loop"),
    ):
        if name in seconds:
            result[f"{name}_speedup_vs_{baseline}"] = seconds[baseline] / seconds[name]
    # Per frame, against what 5x the extractor leaves: the frames are those the output keeps (at most 512).
    frames = sum(min(num_frames(len(clip)), MAX_LENGTH) for clip in clips)
    result["frames"] = frames
    result["batch_fbank_us_per_frame"] = 1e6 * seconds["batch_fbank"] / frames
    result["budget_5x_us_per_frame"] = 1e6 * seconds["ast_feature_extractor"] / 5 / frames
    result |= fbank_profile(functions["batch_fbank"], frames)
    result["clips"] = len(clips)
    result["repeats"] = settings["feature_repeats"]
    return result
