"""What every section of the suite shares: seeded clips, interleaved timing, and the cached synthetic inputs.

The synthetic AudioSet checkpoint (~350 MB), the model converted from it and the synthetic release are made
once per cache folder and reused by later runs; each reaches the cache under a temporary name, so an
interrupted run never leaves half of one behind to be reused.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from vocalsound_hf.audio import AudioInputError, load_audio
from vocalsound_hf.data.synth_release import make_synthetic_release
from vocalsound_hf.features import make_feature_extractor
from vocalsound_hf.fileio import staged_path
from vocalsound_hf.models.build import build_ast
from vocalsound_hf.models.model_dir import save_model_dir

REPO = Path(__file__).resolve().parents[1]
REFERENCE_AST = REPO.parent / "shared" / "reference" / "ast"
SAMPLING_RATE = 16_000


def noise_clips(count: int, seed: int, min_s: float = 2.0, max_s: float = 8.0) -> list[torch.Tensor]:
    """``count`` seeded noise clips of 2-8 s at 16 kHz (content does not change the cost of any step)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(
        int(min_s * SAMPLING_RATE), int(max_s * SAMPLING_RATE) + 1, (count,), generator=generator
    )
    return [0.1 * torch.randn(int(n), generator=generator) for n in lengths]


def interleaved_medians(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
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


def synthetic_audioset_checkpoint(cache_dir: Path) -> Path:
    """The stride-10 synthetic AudioSet checkpoint of the shared reference script, generated once."""
    path = cache_dir / "audioset_synthetic_10_10.pth"
    if not path.is_file():
        with staged_path(path) as tmp:
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


def audioset_model_dir(cache_dir: Path) -> Path:
    """AST base from the synthetic AudioSet checkpoint, adapted to 512 frames, with its six VocalSound rows."""
    model_dir = cache_dir / "ast_synthetic_audioset_512"
    if not (model_dir / "config.json").is_file():
        model = build_ast(
            audioset_pretrain=str(synthetic_audioset_checkpoint(cache_dir)), head="audioset", input_tdim=512
        )
        save_model_dir(model, make_feature_extractor(max_length=512), model_dir)
    return model_dir


def release_dir(cache_dir: Path, num_speakers: int | None) -> Path:
    """A synthetic release folder, made once per cache; ``num_speakers=None`` is the default release, the one
    ``vocalsound-hf synth-release`` makes."""
    root = cache_dir / f"synthetic_release_{num_speakers or 'default'}"
    if not root.is_dir():
        with staged_path(root) as tmp:
            make_synthetic_release(tmp, sampling_rate=SAMPLING_RATE, num_speakers=num_speakers, seed=0)
            os.replace(tmp, root)
    return root


def release_clips(cache_dir: Path, num_speakers: int | None) -> list[torch.Tensor]:
    """Every decodable clip of a synthetic release (``release_dir``; its deliberately broken files are skipped)."""
    decoded = []
    for path in sorted(release_dir(cache_dir, num_speakers).rglob("*.wav")):
        try:  # decoded as predict, the Space and training decode them
            decoded.append(load_audio(path))
        except AudioInputError:
            continue
    return decoded
