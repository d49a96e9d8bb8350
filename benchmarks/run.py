"""The benchmark suite: features, inference and training throughput, every comparison measured in one run.

    python benchmarks/run.py [--quick] [--only AREA ...] [--threads 2] [--quickstart-model DIR] [--cache-dir DIR]

A full run writes ``benchmarks/results.json`` (the run of record), prints its tables and puts them between
the bench markers of ``BENCHMARKS.md`` (only those blocks are replaced); it takes over an hour on an
otherwise idle 2-core machine, most of it the agreement checks over every clip of the default synthetic
release (``--agreement-every 3`` cuts them to a third). ``--quick`` uses fewer clips and iterations, for under 2 minutes once the synthetic checkpoint is
cached (its first generation, ~350 MB, adds about a minute); it prints its tables and writes
``outputs/bench/results-quick.json``, leaving ``benchmarks/results.json`` and ``BENCHMARKS.md`` as they are.
``--only inference`` (or ``features``, ``training``, ``events``) measures those sections alone: a full run of them
replaces just their results in ``benchmarks/results.json`` and their tables, and records its own command,
date and load beside them. ``python benchmarks/report.py`` rewrites the page's tables from a results file
without measuring.

1. Features (``bench_features``): ``batch_fbank`` against ``ASTFeatureExtractor`` and a ``kaldi.fbank`` loop.
2. Inference (``bench_inference``): latency of fp32, the fast path and ONNX Runtime fp32 and int8, idle and
   with the other core busy, their top-1 agreement with fp32, and whether a clip's logits depend on its batch.
3. Training (``bench_training``): clips/s of training steps, and the feature pipeline's share.
4. Events (``bench_events``): event-F1, count error and x real time of ``detect`` on test-split soundscapes
   (quickstart model, fp32 and the fast path), and its peak memory on a one-minute and a one-hour file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))
# Offline, and no progress bars in the printed tables' way: both are read when huggingface_hub and tqdm load.
for _variable, _value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TQDM_DISABLE", "1")):
    os.environ.setdefault(_variable, _value)

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from benchmarks.bench_events import bench_events  # noqa: E402
from benchmarks.bench_features import bench_features  # noqa: E402
from benchmarks.bench_inference import bench_inference  # noqa: E402
from benchmarks.bench_training import bench_training  # noqa: E402
from benchmarks.common import release_dir  # noqa: E402
from benchmarks.report import RESULTS_JSON, render, save_run  # noqa: E402

SECTIONS = ("features", "inference", "training", "events")
DEFAULT_QUICKSTART_MODEL = REPO / "outputs" / "quickstart" / "model"
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vocalsound-hf" / "bench"
# The instruction-set extensions the fast paths depend on (VNNI: int8 products; BF16: the attention; AMX:
# both, in tiles): the int8 paths' ratios to fp32 are per CPU class.
CPU_FLAGS = ("avx2", "avx512f", "avx_vnni", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")

# Sizes of every measurement, for a full run and a quick one.
SETTINGS = {
    "full": {
        "feature_clips": 64,
        "feature_repeats": 7,
        "latency_iterations": 40,
        "batch_dependence_clips": 8,  # one batch of serving (WINDOW_BATCH_SIZE)
        "release_speakers": None,  # the default synthetic release (300 speakers)
        "agreement_clips": None,  # every decodable clip of the release
        "onnx_fp32_every": 8,  # ONNX Runtime fp32's agreement on every 8th of them (it equals fp32 to rounding)
        "train": {"tiny224": (8, 3), "base384": (2, 2)},  # (batch size, timed steps)
        # ~20 one-minute soundscapes; peak memory of detecting a one-minute and a one-hour file.
        "events": {"soundscapes": 20, "soundscape_s": 60.0, "memory_minutes": (1, 60)},
    },
    "quick": {
        "feature_clips": 32,
        "feature_repeats": 3,
        "latency_iterations": 2,
        "batch_dependence_clips": 4,
        "release_speakers": 12,
        "agreement_clips": 8,
        "onnx_fp32_every": 1,
        "train": {"tiny224": (2, 1), "base384": (1, 1)},
        "events": {"soundscapes": 2, "soundscape_s": 20.0, "memory_minutes": (1, 2)},
    },
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer clips and iterations: under 2 minutes")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=None,
        help="measure only these sections; a full run keeps the other sections of the run of record",
    )
    parser.add_argument(
        "--agreement-every",
        type=int,
        default=1,
        metavar="N",
        help="top-1 agreement on the synthetic AudioSet weights over every N-th clip only (default 1: all)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads for every measurement (default 2)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help="where the synthetic checkpoint, converted model and release are kept between runs",
    )
    parser.add_argument(
        "--quickstart-model",
        type=Path,
        default=None,
        help=f"a quickstart-trained model directory (default: {DEFAULT_QUICKSTART_MODEL} if it exists)",
    )
    return parser


def _cpu() -> tuple[str | None, list[str]]:
    """The CPU's model name and which of ``CPU_FLAGS`` it has (Linux; elsewhere nothing)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None, []
    fields = dict(line.split(":", 1) for line in lines if ":" in line)  # the last CPU's; all are alike
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("flags", "").split())
    return fields.get("model name"), [flag for flag in CPU_FLAGS if flag in flags]


def run_header(argv: list[str]) -> dict:
    """What a run records before measuring: the command that reproduces it and the machine it ran on."""
    cpu_model, cpu_flags = _cpu()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": shlex.join(["python", "benchmarks/run.py", *argv]),
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "cpu_model": cpu_model,
            "cpu_flags": cpu_flags,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            # Other work on the machine slows every measurement; the ratios, measured side by side, less so.
            "load_average_1min_at_start": os.getloadavg()[0],
        },
    }


def _cpu_of(header: dict) -> dict:
    """The CPU that the inference figures belong to: its int8 and bf16 paths' ratios are per CPU class."""
    return {"cpu_model": header["machine"]["cpu_model"], "cpu_flags": header["machine"]["cpu_flags"]}


def _record_to_extend(args: argparse.Namespace) -> dict | None:
    """The run of record, for a full run of some sections only: its other sections stay as measured."""
    if args.quick or args.only is None or set(args.only) == set(SECTIONS) or not RESULTS_JSON.is_file():
        return None
    return json.loads(RESULTS_JSON.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    transformers_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    settings = SETTINGS["quick" if args.quick else "full"]
    quickstart = args.quickstart_model
    if quickstart is None and (DEFAULT_QUICKSTART_MODEL / "config.json").is_file():
        quickstart = DEFAULT_QUICKSTART_MODEL
    args.cache_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    header = run_header(argv)
    results = _record_to_extend(args) or header
    sections = {
        "features": lambda: bench_features(settings),
        "inference": lambda: (
            bench_inference(settings, args.cache_dir, quickstart, args.agreement_every) | _cpu_of(header)
        ),
        "training": lambda: bench_training(settings),
        "events": lambda: bench_events(
            release_dir(args.cache_dir, None), quickstart, args.cache_dir, settings["events"]
        ),
    }
    for name in args.only or SECTIONS:
        section_start = time.perf_counter()
        results[name] = section = sections[name]()
        if results is not header:  # measured apart from the record's other sections: say by what
            section["measured_by"] = {key: header[key] for key in ("command", "date")} | {
                "load_average_1min_at_start": header["machine"]["load_average_1min_at_start"]
            }
            section["measured_by"]["load_average_1min_at_end"] = os.getloadavg()[0]
        print(f"[bench] {name}: {time.perf_counter() - section_start:.0f} s", file=sys.stderr)
    if results is header:
        results["total_s"] = time.perf_counter() - started
        results["machine"]["load_average_1min_at_end"] = os.getloadavg()[0]

    print("\n\n".join(render(results).values()))
    print("\n" + save_run(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
