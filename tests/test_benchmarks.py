"""The benchmark suite's report and where runs write it (the measurements themselves run in `make bench`)."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import REPO_ROOT

if str(REPO_ROOT) not in sys.path:  # benchmarks/ is a script folder of the checkout, not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import report  # noqa: E402


def _results(gpu: bool, command: str = "python benchmarks/run.py") -> dict:
    features = {
        "clips": 64,
        "repeats": 7,
        "batch_fbank_clips_per_s": 2000.0,
        "ast_feature_extractor_clips_per_s": 800.0,
        "ast_feature_extractor_numpy_clips_per_s": 80.0,
        "kaldi_loop_clips_per_s": 500.0,
        "batch_fbank_speedup_vs_ast_feature_extractor": 2.5,
        "batch_fbank_speedup_vs_ast_feature_extractor_numpy": 25.0,
        "batch_fbank_speedup_vs_kaldi_loop": 4.0,
        "frames": 26817,
        "batch_fbank_us_per_frame": 1.15,
        "back_to_back_us_per_frame": 1.0,
        "fft_us_per_frame": 0.31,
        "mel_us_per_frame": 0.21,
        "log_us_per_frame": 0.09,
        "framing_us_per_frame": 0.23,
        "other_us_per_frame": 0.16,
        "budget_5x_us_per_frame": 0.6,
    }
    training = {
        "cpu_tiny224_clips_per_s": 4.0,
        "cpu_tiny224_features_ms_per_step": 20.0,
        "cpu_tiny224_batch_size": 8,
        "cpu_tiny224_steps": 3,
    }
    if gpu:
        features |= {
            "batch_fbank_cuda_clips_per_s": 20000.0,
            "batch_fbank_cuda_speedup_vs_ast_feature_extractor": 25.0,
        }
        training |= {
            "cuda_base384_clips_per_s": 160.0,
            "cuda_base384_features_ms_per_step": 10.0,
            "cuda_base384_batch_size": 16,
            "cuda_base384_steps": 10,
            "cuda_base384_bf16_clips_per_s": 400.0,
            "gpu": "Some GPU",
        }
    inference = {
        "model": "AST base384",
        "latency_iterations": 40,
        "agreement_clips": 10,
        "fast_top1_agreement": 0.9898,
        "fp32_eager_p50_s": 0.75,
        "fp32_eager_p90_s": 0.8,
        "fp32_sdpa_p50_s": 0.6,
        "fp32_sdpa_p90_s": 0.7,
        "fast_p50_s": 0.2,
        "fast_p90_s": 0.25,
        "onnx_fp32_p50_s": 0.5,
        "onnx_fp32_p90_s": 0.55,
        "onnx_int8_p50_s": 0.3,
        "onnx_int8_p90_s": 0.35,
        "busy_fp32_sdpa_p50_s": 1.2,
        "busy_fp32_sdpa_p90_s": 1.4,
        "busy_fast_p50_s": 0.3,
        "busy_fast_p90_s": 0.5,
        "busy_onnx_fp32_p50_s": 1.0,
        "busy_onnx_fp32_p90_s": 1.1,
        "busy_onnx_int8_p50_s": 0.4,
        "busy_onnx_int8_p90_s": 0.6,
        "onnx_fp32_top1_agreement": 1.0,
        "onnx_int8_top1_agreement": 0.991,
        "onnx_fp32_max_abs_logit_diff": 2e-6,
        "fast_batch_max_abs_logit_diff": 7e-7,
        "onnx_int8_batch_max_abs_logit_diff": 0.04,
        "batch_dependence_clips": 8,
        "cpu_model": "Some CPU",
        "cpu_flags": ["avx2", "avx512f", "avx512_vnni"],
    }
    machine = {
        "cpu_count": 2,
        "processor": "x86_64",
        "torch": "2",
        "threads": 2,
        "gpu": "Some GPU" if gpu else None,
        "load_average_1min_at_start": 1.0,
        "load_average_1min_at_end": 1.0,
    }
    return {
        "date": "today",
        "command": command,
        "machine": machine,
        "features": features,
        "inference": inference,
        "training": training,
        "events": _events(),
    }


def _events() -> dict:
    path = {
        "event_f1": 0.5,
        "event_precision": 0.5,
        "event_recall": 0.5,
        "event_macro_f1": 0.5,
        "count_error": 4.0,
        "true_count": 200,
        "predicted_count": 190,
        "per_class_f1": {"Cough": 0.5, "Sniff": None},
        "count_error_per_class": {"Cough": 1.0, "Sniff": 3.0},
        "x_real_time": 80.0,
    }
    return {
        "soundscapes": 20,
        "soundscape_s": 60.0,
        "thresholds": {"min_confidence": 0.6, "activity_db": 3.0, "merge_gap_s": 0.6},
        "onset_collar_s": 0.5,
        "offset_length_share": 0.5,
        "threads": 2,
        "fp32": path,
        "fast": path | {"x_real_time": 120.0},
        "peak_rss": {
            "1min": {"peak_rss_mb": 1000.0, "x_real_time": 90.0},
            "60min": {"peak_rss_mb": 1001.0, "x_real_time": 95.0},
        },
    }


def _page() -> str:
    """A page with every area's markers, prose around them and stale blocks inside."""
    parts = ["# Title\n\nProse stays.\n"]
    for area in report.AREAS:
        start, end = report.markers(area)
        parts.append(f"\n## {area}\n\n{start}\nstale {area}\n{end}\n\nNotes on {area} stay.\n")
    return "".join(parts)


def test_table_reports_the_gpu_rows_and_the_feature_share_of_a_step():
    blocks = report.render(_results(gpu=True))
    assert (
        "| `batch_fbank` on the GPU (Some GPU), clips already there | 20000 | 25.0x `ASTFeatureExtractor` |"
        in blocks["features"]
    )
    # 8 clips at 4 clips/s: a 2 s step, of which 20 ms of features; 16 clips at 160/s: 100 ms, 10 ms of them.
    assert "| cpu | tiny224 | 8 | 4.00 | - | 20.0 (1.0 % of the fp32 step) |" in blocks["training"]
    assert "| cuda | base384 | 16 | 160.00 | 400.00 | 10.0 (10.0 % of the fp32 step) |" in blocks["training"]


def test_table_without_a_gpu_has_no_gpu_rows():
    blocks = report.render(_results(gpu=False))
    assert "on the GPU" not in blocks["features"] and "| cuda |" not in blocks["training"]
    assert "| cpu | tiny224 | 8 | 4.00 | - |" in blocks["training"]
    assert "GPU: none" in blocks["run"]


def test_report_gives_every_step_of_the_per_frame_breakdown_and_the_inference_ratios():
    results = _results(gpu=False)
    blocks = report.render(results)
    for key in (
        "batch_fbank",
        "back_to_back",
        "fft",
        "mel",
        "log",
        "framing",
        "other",
        "budget_5x",
    ):
        assert f"{results['features'][f'{key}_us_per_frame']:.2f}" in blocks["features"], key
    # Speeds against fp32 sdpa's p50 of 0.6 s (1.2 s with the other core busy); agreements keep two decimals, so
    # they never round up to a bar.
    table = blocks["inference"]
    assert (
        "| fast path (int8 linear layers, bf16 attention) | 0.200 | 0.250 | 3.00x | 0.300 | 0.500 | 4.00x "
        "| 98.98 % | - | 7.0e-07 |" in table
    )
    assert "| transformers fp32, eager attention | 0.750 | 0.800 | 0.80x | - | - | - | - | - | - |" in table
    assert (
        "| ONNX Runtime int8 (dynamic, per-channel weights) | 0.300 | 0.350 | 2.00x | 0.400 | 0.600 | 3.00x "
        in table
    )
    assert "| 99.10 % | - | 4.0e-02 |" in table
    assert (
        "| transformers fp32, sdpa attention | 0.600 | 0.700 | 1.00x | 1.200 | 1.400 | 1.00x | reference |"
        in table
    )
    assert "over 10 synthetic-release clips" in table and "quickstart-trained model not found" in table
    assert "Some CPU: VNNI yes, AVX512-BF16 no, AMX no (flags: avx2, avx512f, avx512_vnni)" in table


def test_fbank_profile_finds_every_step_of_batch_fbank():
    from benchmarks.bench_features import fbank_profile
    from benchmarks.common import noise_clips
    from vocalsound_hf.features import batch_fbank, num_frames

    clips = noise_clips(4, seed=0)
    frames = sum(min(num_frames(len(clip)), 512) for clip in clips)
    profile = fbank_profile(lambda: batch_fbank(clips, max_length=512), frames, calls=2)
    # A step whose operations were renamed or fused away would read 0 and vanish from the breakdown.
    for step in ("fft", "mel", "log", "framing"):
        assert 0 < profile[f"{step}_us_per_frame"] < profile["back_to_back_us_per_frame"], step


def test_only_the_marked_blocks_of_benchmarks_md_are_replaced(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(_page())
    blocks = {area: f"new {area}" for area in report.AREAS}
    assert report.update_benchmarks_md(blocks, path)
    assert path.read_text() == _page().replace("stale ", "new ")
    # One marker missing: nothing is written, not even the blocks whose markers are there.
    broken = _page().replace(report.markers("training")[1], "")
    path.write_text(broken)
    assert not report.update_benchmarks_md(blocks, path)
    assert path.read_text() == broken


def test_a_quick_run_leaves_benchmarks_md_and_the_run_of_record_alone(tmp_path):
    page, record = tmp_path / "BENCHMARKS.md", tmp_path / "results.json"
    page.write_bytes((REPO_ROOT / "BENCHMARKS.md").read_bytes())
    record.write_text('{"the": "run of record"}\n')
    quick_record = tmp_path / "outputs" / "results-quick.json"
    quick = _results(gpu=False, command="python benchmarks/run.py --quick")
    assert not report.is_full_run(quick)

    report.save_run(quick, record=record, quick_record=quick_record, page=page)
    assert page.read_bytes() == (REPO_ROOT / "BENCHMARKS.md").read_bytes()
    assert record.read_text() == '{"the": "run of record"}\n'
    assert json.loads(quick_record.read_text()) == quick


def test_a_full_run_becomes_the_run_of_record_and_rewrites_the_tables(tmp_path):
    page, record, quick_record = (
        tmp_path / "BENCHMARKS.md",
        tmp_path / "results.json",
        tmp_path / "quick.json",
    )
    page.write_text(_page())
    full = _results(gpu=False)
    report.save_run(full, record=record, quick_record=quick_record, page=page)
    assert json.loads(record.read_text()) == full
    assert not quick_record.exists()
    assert page.read_text() == report.replace_blocks(_page(), report.render(full))
    assert "stale" not in page.read_text() and "Notes on training stay." in page.read_text()


def test_report_command_rewrites_the_tables_from_a_full_run_only(tmp_path):
    page = tmp_path / "BENCHMARKS.md"
    page.write_text(_page())
    quick, full = tmp_path / "quick.json", tmp_path / "full.json"
    quick.write_text(json.dumps(_results(gpu=False, command="python benchmarks/run.py --quick")))
    full.write_text(json.dumps(_results(gpu=True)))
    assert report.main([str(quick), "--page", str(page)]) == 2
    assert page.read_text() == _page()
    assert report.main([str(full), "--page", str(page)]) == 0
    assert page.read_text() == report.replace_blocks(_page(), report.render(_results(gpu=True)))


def test_benchmarks_md_shows_the_run_of_record():
    """The committed page holds every area's markers, filled from benchmarks/results.json, a full run."""
    results = json.loads(report.RESULTS_JSON.read_text())
    assert report.is_full_run(results), results["command"]
    text = report.BENCHMARKS_MD.read_text()
    assert report.replace_blocks(text, report.render(results)) == text


def test_run_records_whether_it_is_a_quick_run():
    from benchmarks import run

    assert not report.is_full_run(run.run_header(["--quick", "--threads", "2"]))
    assert report.is_full_run(run.run_header(["--threads", "4"]))


def test_cpu_features_name_the_extensions_of_the_int8_and_bf16_paths():
    assert report.cpu_features(["avx2", "avx_vnni", "avx512_bf16", "amx_int8"]).startswith(
        "VNNI yes, AVX512-BF16 yes, AMX yes"
    )
    assert report.cpu_features([]) == "VNNI no, AVX512-BF16 no, AMX no"
    assert report.cpu_features(None) == "CPU features not recorded"


def test_a_run_of_one_section_renders_only_its_tables():
    results = _results(gpu=False)
    del results["features"], results["training"], results["events"]
    assert set(report.render(results)) == {"run", "inference"}


def test_a_full_run_of_one_section_keeps_the_other_sections_of_the_record(tmp_path, monkeypatch):
    from benchmarks import run

    record = tmp_path / "results.json"
    record.write_text(json.dumps(_results(gpu=False)))
    monkeypatch.setattr(run, "RESULTS_JSON", record)
    args = run._parser().parse_args(["--only", "inference"])
    assert run._record_to_extend(args) == _results(gpu=False)
    for argv in (["--quick", "--only", "inference"], [], ["--only", *run.SECTIONS]):
        assert run._record_to_extend(run._parser().parse_args(argv)) is None, argv


def test_the_busy_core_process_runs_inside_and_is_gone_after():
    from benchmarks.bench_onnx import busy_core

    with pytest.raises(RuntimeError), busy_core() as process:
        assert process.poll() is None
        raise RuntimeError("a failed measurement")
    assert process.poll() is not None  # killed and reaped even though the block raised


def test_the_quick_inference_section_measures_every_path(tiny_model_dir):
    """The quick settings of the real section (AST base384, the cached synthetic checkpoint): every key, sane.

    The tiny model stands in for the quickstart one. About a minute, plus one more the first time the
    synthetic checkpoint is cached.
    """
    pytest.importorskip("onnxruntime")
    from benchmarks import run
    from benchmarks.bench_inference import bench_inference

    run.DEFAULT_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    inference = bench_inference(run.SETTINGS["quick"], run.DEFAULT_CACHE_DIR, tiny_model_dir)
    for prefix in ("", "busy_"):
        for name in ("fp32_sdpa", "fast", "onnx_fp32", "onnx_int8"):
            p50, p90 = inference[f"{prefix}{name}_p50_s"], inference[f"{prefix}{name}_p90_s"]
            assert 0 < p50 <= p90 < 60, (prefix, name)
    # The fp32 graph computes the model's logits: only float rounding apart, so the same top class everywhere.
    assert inference["onnx_fp32_top1_agreement"] == inference["quickstart_onnx_fp32_top1_agreement"] == 1.0
    assert inference["onnx_fp32_max_abs_logit_diff"] < 1e-4
    for key in ("fast", "onnx_int8", "quickstart_fast", "quickstart_onnx_int8"):
        assert 0 <= inference[f"{key}_top1_agreement"] <= 1, key
    # The fast path quantises each clip's activations on their own; onnxruntime's dynamic int8, per batch.
    for name in ("fp32_sdpa", "fast", "onnx_fp32"):
        assert inference[f"{name}_batch_max_abs_logit_diff"] < 1e-4, name
    assert inference["onnx_int8_batch_max_abs_logit_diff"] > inference["fast_batch_max_abs_logit_diff"]
    assert (inference["agreement_clips"], inference["batch_dependence_clips"]) == (8, 4)
    table = report.inference_table(
        run.run_header(["--quick", "--only", "inference"]) | {"inference": inference}
    )
    assert "| ONNX Runtime int8 (dynamic, per-channel weights) |" in table and "VNNI" in table


def test_the_inference_table_says_how_its_figures_were_taken():
    results = _results(gpu=False)
    results["inference"] |= {
        "agreement_every": 3,
        "quickstart_fast_top1_agreement": 0.999,
        "quickstart_agreement_clips": 30,
        "measured_by": {
            "command": "python benchmarks/run.py --only inference",
            "date": "today",
            "load_average_1min_at_start": 3.0,
            "load_average_1min_at_end": 2.0,
            "note": "other jobs ran beside it",
        },
    }
    table = report.inference_table(results)
    assert "over 10 synthetic-release clips (one in 3 of the release's clips)" in table
    assert "quickstart-trained model over 30 clips" in table
    assert "`python benchmarks/run.py --only inference`, today, load average 3.0 at the start" in table
    assert "2.0 at the end (other jobs ran beside it)." in table


def test_the_events_section_scores_both_paths_and_measures_memory_in_a_fresh_process(
    tiny_model_dir, synth_release, tmp_path
):
    """The real section at its quick size; the tiny random model stands in for the quickstart one, so the
    scores are only checked to be scores. Then its table."""
    from benchmarks import run
    from benchmarks.bench_events import bench_events

    events = bench_events(synth_release, tiny_model_dir, tmp_path, run.SETTINGS["quick"]["events"])
    for name in ("fp32", "fast"):
        row = events[name]
        assert 0 <= row["event_f1"] <= 1 and row["x_real_time"] > 0
        assert row["true_count"] > 0 and set(row["per_class_f1"]) == set(row["count_error_per_class"])
    memory = events["peak_rss"]
    assert set(memory) == {"1min", "2min"}
    assert memory["2min"]["audio_s"] == 120 and 100 < memory["1min"]["peak_rss_mb"] < 4000
    json.dumps(events, allow_nan=False)  # strict JSON, as results.json is written
    table = report.events_table({"events": events})
    assert "| fp32 |" in table and "| fast |" in table and "2 min" in table
    assert bench_events(synth_release, None, tmp_path, {}) == {
        "skipped": "no quickstart-trained model (make quickstart writes outputs/quickstart/model)"
    }
    assert report.events_table({"events": bench_events(synth_release, None, tmp_path, {})}).startswith(
        "Not measured"
    )
