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
AREAS = ("run", "features", "inference", "training", "events")


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


INFERENCE_PATHS = (
    ("fp32_eager", "transformers fp32, eager attention"),
    ("fp32_sdpa", "transformers fp32, sdpa attention"),
    ("fast", "fast path (int8 linear layers, bf16 attention)"),
    ("onnx_fp32", "ONNX Runtime fp32"),
    ("onnx_int8", "ONNX Runtime int8 (dynamic, per-channel weights)"),
)


def cpu_features(flags: list[str] | None) -> str:
    """Which of the extensions the int8 and bf16 paths use the CPU has, in words."""
    if flags is None:
        return "CPU features not recorded"
    has = set(flags)
    found = {
        "VNNI": bool(has & {"avx512_vnni", "avx_vnni"}),
        "AVX512-BF16": "avx512_bf16" in has,
        "AMX": bool(has & {"amx_int8", "amx_bf16"}),
    }
    return ", ".join(f"{name} {'yes' if present else 'no'}" for name, present in found.items()) + (
        f" (flags: {', '.join(flags)})" if flags else ""
    )


def _speed(inference: dict, prefix: str, name: str) -> str:
    p50, reference = inference.get(f"{prefix}{name}_p50_s"), inference.get(f"{prefix}fp32_sdpa_p50_s")
    return "-" if p50 is None or reference is None else f"{reference / p50:.2f}x"


def _figure(value: float | None, spec: str, scale: float = 1.0, unit: str = "") -> str:
    return "-" if value is None else f"{scale * value:{spec}}{unit}"


def _inference_row(inference: dict, name: str, label: str) -> str:
    get = inference.get
    cells = [label]
    for prefix in ("", "busy_"):
        cells += [
            _figure(get(f"{prefix}{name}_p50_s"), ".3f"),
            _figure(get(f"{prefix}{name}_p90_s"), ".3f"),
            _speed(inference, prefix, name),
        ]
    for prefix in ("", "quickstart_"):
        # Two decimals: at one, 98.98 % would print as 99.0 % against a 99 % bar.
        agreement = get(f"{prefix}{name}_top1_agreement")
        cells.append("reference" if name == "fp32_sdpa" else _figure(agreement, ".2f", 100, " %"))
    cells.append(_figure(get(f"{name}_batch_max_abs_logit_diff"), ".1e"))
    return "| " + " | ".join(cells) + " |"


def inference_table(results: dict) -> str:
    inference = results["inference"]
    flags = inference.get("cpu_flags", results["machine"].get("cpu_flags"))
    cpu = inference.get("cpu_model") or results["machine"].get("cpu_model") or "CPU"
    threads = results["machine"]["threads"]
    lines = [
        f"{inference['model']}, batch 1, forward pass only, {inference['latency_iterations']} runs per path in "
        f"alternating blocks, {threads} threads (torch and ONNX Runtime alike), the same features for every path. "
        f"{cpu}: {cpu_features(flags)}.",
        "",
        "| path | p50 (s) | p90 (s) | speed against fp32 sdpa (p50) | other core busy: p50 (s) | p90 (s) "
        "| speed against fp32 sdpa (p50) | top-1 agreement with fp32, AudioSet weights | quickstart model "
        "| batch dependence (max abs logit) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [_inference_row(inference, name, label) for name, label in INFERENCE_PATHS]
    lines += ["", " ".join(_inference_notes(inference))]
    return "\n".join(lines)


def _inference_notes(inference: dict) -> list[str]:
    """The sentences under the inference table: what each column measured, on what."""
    notes = [
        f"Top-1 agreement with fp32 sdpa over {inference['agreement_clips']} synthetic-release clips"
        + (
            f" (one in {every} of the release's clips)"
            if (every := inference.get("agreement_every", 1)) > 1
            else ""
        )
        + ", in batches of 8 as serving batches a recording's windows;",
        f"quickstart model: the quickstart-trained model over {inference.get('quickstart_agreement_clips', 'the same')} "
        "clips."
        if "quickstart_fast_top1_agreement" in inference
        else "quickstart-trained model not found, not measured.",
    ]
    if "onnx_fp32_max_abs_logit_diff" in inference:
        clips = inference.get("onnx_fp32_agreement_clips", inference["agreement_clips"])
        spread = (
            ""
            if clips == inference["agreement_clips"]
            else f" (run on {clips} of them, spread over the release)"
        )
        notes.append(
            f"ONNX Runtime fp32's logits{spread} are within {inference['onnx_fp32_max_abs_logit_diff']:.1e} of fp32's."
        )
    if "onnx_int8_head_fp32" in inference:
        notes.append(
            "The int8 graph's classifier head is "
            + (
                "fp32."
                if inference["onnx_int8_head_fp32"]
                else "int8 too (onnxruntime quantizes its `Gemm`)."
            )
        )
    for prefix, model in (("", "AudioSet weights"), ("quickstart_", "quickstart model")):
        head = inference.get(f"{prefix}onnx_int8_head_fp32_top1_agreement")
        if head is not None:
            notes.append(f"int8 with the head left fp32: {100 * head:.2f} % ({model}).")
    if "batch_dependence_clips" in inference:
        notes.append(
            "Batch dependence: the largest change of a clip's logits between running alone and in a batch of "
            f"{inference['batch_dependence_clips']} different clips."
        )
    if "busy_fp32_sdpa_p50_s" in inference:
        notes.append("Other core busy: a second process spinning a plain loop throughout.")
    measured = inference.get("measured_by")
    if measured:
        notes.append(
            f"Measured apart from the other sections: `{measured['command']}`, {measured['date']}, load "
            f"average {measured['load_average_1min_at_start']:.1f} at the start, "
            f"{measured['load_average_1min_at_end']:.1f} at the end"
            + (f" ({measured['note']})." if measured.get("note") else ".")
        )
    return notes


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


def events_table(results: dict) -> str:
    events = results["events"]
    if "skipped" in events:
        return f"Not measured: {events['skipped']}."
    thresholds = events["thresholds"]
    lines = [
        f"{events['soundscapes']} soundscapes of {events['soundscape_s']:g} s from the test split of the default "
        f"synthetic release, quickstart model, {events['threads']} threads; thresholds min_confidence "
        f"{thresholds['min_confidence']:g}, activity_db {thresholds['activity_db']:g}, merge_gap_s "
        f"{thresholds['merge_gap_s']:g}; onset collar {events['onset_collar_s']:g} s, offset collar "
        f"{100 * events['offset_length_share']:g} % of the event's length.",
        "",
        "| path | event F1 (micro) | precision | recall | macro F1 | count error per recording (sum of 6 classes) | events true / found | x real time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("fp32", "fast"):
        row = events[name]
        lines.append(
            f"| {name} | {row['event_f1']:.3f} | {row['event_precision']:.3f} | {row['event_recall']:.3f} | "
            f"{row['event_macro_f1']:.3f} | {row['count_error']:.2f} | {row['true_count']} / "
            f"{row['predicted_count']} | {row['x_real_time']:.0f} |"
        )
    fp32 = events["fp32"]
    lines += [
        "",
        "| class | " + " | ".join(fp32["per_class_f1"]) + " |",
        "|---|" + "---:|" * len(fp32["per_class_f1"]),
        "| event F1 (fp32) | "
        + " | ".join("-" if f1 is None else f"{f1:.2f}" for f1 in fp32["per_class_f1"].values())
        + " |",
        "| count error (fp32) | "
        + " | ".join(f"{e:.2f}" for e in fp32["count_error_per_class"].values())
        + " |",
        "",
        "Peak memory of `detect` on one file (fresh process, fast path; the model and libraries included): "
        + ", ".join(
            f"{key.removesuffix('min')} min {value['peak_rss_mb']:.0f} MB ({value['x_real_time']:.0f}x real time)"
            for key, value in events["peak_rss"].items()
        )
        + ".",
    ]
    return "\n".join(lines)


def render(results: dict) -> dict[str, str]:
    """The generated block of each area, by area."""
    tables = {
        "run": run_line,
        "features": features_table,
        "inference": inference_table,
        "training": training_table,
        "events": events_table,
    }
    # A run of some sections only (``run.py --only``) has no results for the others, and no tables.
    return {area: tables[area](results) for area in AREAS if area == "run" or area in results}


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
