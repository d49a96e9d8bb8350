"""The suite's report: Markdown tables of a results dict, and where a run's results are written.

    python benchmarks/report.py [RESULTS_JSON] [--page BENCHMARKS.md]

rewrites the generated tables of BENCHMARKS.md from a full run's results (default: the run of record,
``benchmarks/results.json``) without measuring anything. Each area's table sits between its own markers,
``<!-- bench:AREA:start -->`` and ``<!-- bench:AREA:end -->``; the rest of the page is left as it is.

Only a full run reaches the page and ``benchmarks/results.json``. A quick run (``run.py --quick``: fewer
clips and iterations, rough figures) writes its results to ``outputs/bench/results-quick.json`` (ignored by
git) and leaves both alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from vocalsound_hf.fileio import write_text_atomically  # noqa: E402

RESULTS_JSON = REPO / "benchmarks" / "results.json"
QUICK_RESULTS_JSON = REPO / "outputs" / "bench" / "results-quick.json"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
AREAS = ("run", "features", "inference", "training")


def markers(area: str) -> tuple[str, str]:
    return f"<!-- bench:{area}:start -->", f"<!-- bench:{area}:end -->"


def is_full_run(results: dict) -> bool:
    """Whether ``results`` come from a full run, the only kind that BENCHMARKS.md reports."""
    return "--quick" not in results["command"].split()


def run_line(results: dict) -> str:
    """One line: the machine, the versions and the exact command of the run."""
    machine = results["machine"]
    cpu = f"{machine['cpu_count']} CPU cores ({machine.get('cpu_model') or machine['processor']}"
    cpu += f"; {', '.join(machine['cpu_flags'])})" if machine.get("cpu_flags") else ")"
    versions = ", ".join(
        f"{name} {machine[key]}"
        for name, key in (("Python", "python"), ("torch", "torch"), ("transformers", "transformers"))
        if machine.get(key)
    )
    duration = f", {results['total_s'] / 60:.0f} min" if "total_s" in results else ""
    return (
        f"Run of record: {cpu}, GPU: {machine.get('gpu') or 'none'}, {machine['threads']} torch threads, "
        f"{versions}; `{results['command']}`{duration}; load average {machine['load_average_1min_at_start']:.1f} "
        f"at the start, {machine['load_average_1min_at_end']:.1f} at the end."
    )


def features_table(results: dict) -> str:
    features = results["features"]
    rows = [
        ("`batch_fbank`", "batch_fbank", None),
        (
            "`ASTFeatureExtractor`, torchaudio installed (its `kaldi.fbank`)",
            "ast_feature_extractor",
            "faster",
        ),
        ("`ASTFeatureExtractor`, no torchaudio (its numpy fbank)", "ast_feature_extractor_numpy", "faster"),
        ("`kaldi.fbank` loop", "kaldi_loop", "faster"),
    ]
    lines = [
        f"One batch of {features['clips']} clips of 2-8 s, median of {features['repeats']} interleaved runs.",
        "",
        "| extractor | clips/s | `batch_fbank` is |",
        "|---|---:|---:|",
    ]
    for label, name, ratio in rows:
        speedup = features.get(f"batch_fbank_speedup_vs_{name}")
        lines.append(
            f"| {label} | {features[f'{name}_clips_per_s']:.0f} | "
            f"{f'{speedup:.1f}x {ratio}' if ratio else ''} |"
        )
    if "batch_fbank_cuda_clips_per_s" in features:
        lines.append(
            f"| `batch_fbank` on the GPU ({results['machine']['gpu']}), clips already there | "
            f"{features['batch_fbank_cuda_clips_per_s']:.0f} | "
            f"{features['batch_fbank_cuda_speedup_vs_ast_feature_extractor']:.1f}x `ASTFeatureExtractor` |"
        )
    lines += [
        "",
        f"Per frame ({features['frames']} frames), `batch_fbank` took {features['batch_fbank_us_per_frame']:.2f} us "
        f"({features['back_to_back_us_per_frame']:.2f} back to back). Profiled: FFT {features['fft_us_per_frame']:.2f}, "
        f"squares and mel products {features['mel_us_per_frame']:.2f}, floored log {features['log_us_per_frame']:.2f}, "
        f"framing and normalisation {features['framing_us_per_frame']:.2f}, the rest (output writes, copies, "
        f"per-operation overhead) {features['other_us_per_frame']:.2f}. 5x `ASTFeatureExtractor` would leave "
        f"{features['budget_5x_us_per_frame']:.2f} us per frame.",
    ]
    return "\n".join(lines)


def inference_table(results: dict) -> str:
    inference = results["inference"]
    lines = [
        f"{inference['model']}, batch 1, forward pass only, {inference['latency_iterations']} runs per path in "
        "alternating blocks.",
        "",
        "| path | p50 (s) | p90 (s) | speed against fp32 sdpa (p50) |",
        "|---|---:|---:|---:|",
    ]
    for name, label in (
        ("fp32_eager", "transformers fp32, eager attention"),
        ("fp32_sdpa", "transformers fp32, sdpa attention"),
        ("fast", "fast path (int8 linear layers, bf16 attention)"),
    ):
        p50, p90 = inference[f"{name}_p50_s"], inference[f"{name}_p90_s"]
        lines.append(f"| {label} | {p50:.3f} | {p90:.3f} | {inference['fp32_sdpa_p50_s'] / p50:.2f}x |")
    quickstart = inference.get("quickstart_fast_top1_agreement")
    lines += [
        "",
        # Two decimals: at one, 98.98 % would print as 99.0 % against a 99 % bar.
        f"Top-1 agreement of the fast path with fp32 sdpa: {100 * inference['fast_top1_agreement']:.2f} % over "
        f"{inference['agreement_clips']} synthetic-release clips (synthetic AudioSet weights); "
        + (
            f"{100 * quickstart:.2f} % with the quickstart-trained model."
            if quickstart is not None
            else "quickstart-trained model not found, not measured."
        ),
    ]
    return "\n".join(lines)


def training_table(results: dict) -> str:
    training = results["training"]
    lines = [
        "Full steps (features with mixup and SpecAugment, forward, backward, Adam), 512 frames, stride 10.",
        "",
        "| device | preset | batch | fp32 clips/s | bf16 clips/s | features alone, ms per step |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key, batch in training.items():
        if not key.endswith("_batch_size"):
            continue
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


def render(results: dict) -> dict[str, str]:
    """The generated block of each area, by area."""
    tables = {
        "run": run_line,
        "features": features_table,
        "inference": inference_table,
        "training": training_table,
    }
    return {area: tables[area](results) for area in AREAS}


def replace_blocks(text: str, blocks: dict[str, str]) -> str | None:
    """``text`` with each area's marked block replaced by ``blocks[area]``; None if a marker pair is missing."""
    for area, block in blocks.items():
        start_marker, end_marker = markers(area)
        start, end = text.find(start_marker), text.find(end_marker)
        if start < 0 or end < start:
            return None
        text = text[: start + len(start_marker)] + "\n" + block + "\n" + text[end:]
    return text


def update_benchmarks_md(blocks: dict[str, str], path: Path = BENCHMARKS_MD) -> bool:
    """Replace the marked blocks of ``path``, atomically; False (and nothing written) if the file or a marker lacks."""
    if not path.is_file():
        return False
    text = replace_blocks(path.read_text(encoding="utf-8"), blocks)
    if text is None:
        return False
    write_text_atomically(path, text)
    return True


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def save_run(
    results: dict,
    *,
    record: Path = RESULTS_JSON,
    quick_record: Path = QUICK_RESULTS_JSON,
    page: Path = BENCHMARKS_MD,
) -> str:
    """Write a run's results where they belong; returns what was written.

    A full run becomes the run of record: its results go to ``record`` and its tables into ``page``. A quick
    run's go to ``quick_record`` only: its figures are too rough for the page, and the run of record stays.
    """
    text = json.dumps(results, indent=2) + "\n"
    if not is_full_run(results):
        quick_record.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(quick_record, text)
        return (
            f"wrote {_shown(quick_record)}; a quick run leaves {_shown(record)} and {page.name} as they are"
        )
    record.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(record, text)
    if update_benchmarks_md(render(results), page):
        return f"wrote {_shown(record)} and the tables in {page.name}"
    return f"wrote {_shown(record)}; {page.name} or one of its bench markers is missing, so its tables are as they were"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rewrite BENCHMARKS.md's tables from a full run's results.")
    parser.add_argument(
        "results", nargs="?", type=Path, default=RESULTS_JSON, help="a results.json of a full run"
    )
    parser.add_argument(
        "--page", type=Path, default=BENCHMARKS_MD, help="the page to update (default BENCHMARKS.md)"
    )
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text(encoding="utf-8"))
    if not is_full_run(results):
        print(
            f"{args.results} holds a quick run ({results['command']}); only a full run's tables go on the page",
            file=sys.stderr,
        )
        return 2
    if not update_benchmarks_md(render(results), args.page):
        print(f"{args.page} or one of its bench markers is missing; nothing written", file=sys.stderr)
        return 1
    print(f"wrote the tables of {args.page} from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
