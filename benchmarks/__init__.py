"""The benchmark suite: ``python benchmarks/run.py [--quick]`` measures, ``benchmarks/report.py`` writes the page.

- ``run.py``: the command (arguments, the sections in order, where the results go).
- ``common.py``: seeded clips, interleaved timing, and the cached synthetic checkpoint, model and release.
- ``bench_features.py``: ``batch_fbank`` against ``ASTFeatureExtractor`` and a ``kaldi.fbank`` loop, per step.
- ``bench_inference.py``: latency of fp32 and the fast path, and the fast path's top-1 agreement.
- ``bench_training.py``: clips/s of training steps, and the feature pipeline's share of a step.
- ``report.py``: the Markdown tables of a results dict, and writing them into BENCHMARKS.md.
"""
