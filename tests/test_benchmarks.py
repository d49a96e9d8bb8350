"""The benchmark suite's report: the table it writes into BENCHMARKS.md (the measurements run in `make bench`)."""

from __future__ import annotations

import importlib.util

from conftest import REPO_ROOT


def _bench():
    spec = importlib.util.spec_from_file_location("bench_run", REPO_ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _results(gpu: bool) -> dict:
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
        "fft_us_per_frame": 0.3,
        "mel_us_per_frame": 0.21,
        "log_us_per_frame": 0.09,
        "framing_us_per_frame": 0.2,
        "other_us_per_frame": 0.2,
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
        "fast_top1_agreement": 0.99,
        **{f"{path}_p{q}_s": 0.5 for path in ("fp32_eager", "fp32_sdpa", "fast") for q in (50, 90)},
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
        "command": "python benchmarks/run.py",
        "machine": machine,
        "features": features,
        "inference": inference,
        "training": training,
    }


def test_table_reports_the_gpu_rows_and_the_feature_share_of_a_step():
    table = _bench().markdown_table(_results(gpu=True))
    assert (
        "| `batch_fbank` on the GPU (Some GPU), clips already there | 20000 | 25.0x `ASTFeatureExtractor` |"
        in table
    )
    # 8 clips at 4 clips/s: a 2 s step, of which 20 ms of features; 16 clips at 160/s: 100 ms, 10 ms of them.
    assert "| cpu | tiny224 | 8 | 4.00 | - | 20.0 (1.0 % of the fp32 step) |" in table
    assert "| cuda | base384 | 16 | 160.00 | 400.00 | 10.0 (10.0 % of the fp32 step) |" in table


def test_table_without_a_gpu_has_no_gpu_rows():
    table = _bench().markdown_table(_results(gpu=False))
    assert "on the GPU" not in table and "| cuda |" not in table
    assert "| cpu | tiny224 | 8 | 4.00 | - |" in table


def test_table_breaks_the_feature_time_per_frame_down_against_the_5x_budget():
    table = _bench().markdown_table(_results(gpu=False))
    assert (
        "Per frame (26817 frames): `batch_fbank` took 1.15 us in the interleaved runs above and 1.00 in "
        "back-to-back runs. Of these, profiled: FFT 0.30, squares and mel products 0.21, floored log 0.09, "
        "framing and normalisation 0.20, the rest (output and padding writes, copies, per-operation overhead) "
        "0.20. 5x `ASTFeatureExtractor` would leave 0.60 us per frame."
    ) in table


def test_fbank_profile_finds_every_step_of_batch_fbank():
    from vocalsound_hf.features import batch_fbank, num_frames

    bench = _bench()
    clips = bench._clips(4, seed=0)
    frames = sum(min(num_frames(len(clip)), 512) for clip in clips)
    profile = bench._fbank_profile(lambda: batch_fbank(clips, max_length=512), frames, calls=2)
    # A step whose operations were renamed or fused away would read 0 and vanish from the breakdown.
    for step in ("fft", "mel", "log", "framing"):
        assert 0 < profile[f"{step}_us_per_frame"] < profile["back_to_back_us_per_frame"], step


def test_only_the_marked_block_of_benchmarks_md_is_replaced(tmp_path):
    bench = _bench()
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Title\n\n{bench.START_MARKER}\nold table\n{bench.END_MARKER}\n\nNotes stay.\n")
    assert bench.update_benchmarks_md("new table", path)
    assert (
        path.read_text() == f"# Title\n\n{bench.START_MARKER}\nnew table\n{bench.END_MARKER}\n\nNotes stay.\n"
    )
    path.write_text("no markers here\n")
    assert not bench.update_benchmarks_md("new table", path)
    assert path.read_text() == "no markers here\n"
