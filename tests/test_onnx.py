"""``export-onnx``: the ONNX graph computes the transformers model's logits, in the layout optimum reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from transformers import (  # noqa: E402
    ASTFeatureExtractor,
    ASTForAudioClassification,
    AutoConfig,
    AutoFeatureExtractor,
    BertConfig,
)

from vocalsound_hf.cli import main  # noqa: E402
from vocalsound_hf.fileio import PARTIAL_SUFFIX  # noqa: E402
from vocalsound_hf.inference.classifier import ModelLoadError  # noqa: E402
from vocalsound_hf.inference.onnx_export import export_onnx  # noqa: E402

SCRIPT = Path(sys.executable).with_name("vocalsound-hf")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "vocalsound_hf.cli"]
# fp32 graph vs fp32 eager: only the order of float operations differs.
FP32_ATOL = 1e-4
# Dynamic int8 weights and activations: a loose bound on how far a logit may move (about 0.03 measured).
INT8_ATOL = 0.15


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory) -> Path:
    return export_onnx(tiny_model_dir, tmp_path_factory.mktemp("onnx") / "export", int8=True)


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    return ASTForAudioClassification.from_pretrained(tiny_model_dir, use_safetensors=True).eval()


def features(model_dir: Path, batch: int, seed: int) -> np.ndarray:
    """The feature extractor's input for ``batch`` seeded noise clips of different lengths and levels."""
    extractor = ASTFeatureExtractor.from_pretrained(model_dir)
    rng = np.random.default_rng(seed)
    clips = [
        (rng.uniform(0.01, 0.5) * rng.standard_normal(int(rng.integers(4_000, 24_000)))).astype(np.float32)
        for _ in range(batch)
    ]
    values = extractor(clips, sampling_rate=extractor.sampling_rate, return_tensors="np")["input_values"]
    return values.astype(np.float32)


def run_onnx(path: Path, inputs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input_values": inputs})[0]


def torch_logits(model, inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(input_values=torch.from_numpy(inputs)).logits.numpy()


@pytest.mark.parametrize("batch", [1, 3])
def test_the_fp32_graph_gives_the_transformers_logits_at_any_batch_size(
    exported, reference, tiny_model_dir, batch
):
    inputs = features(tiny_model_dir, batch, seed=batch)
    assert inputs.shape == (batch, reference.config.max_length, reference.config.num_mel_bins)
    logits = run_onnx(exported / "onnx" / "model.onnx", inputs)
    expected = torch_logits(reference, inputs)
    assert logits.shape == expected.shape == (batch, reference.config.num_labels)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=FP32_ATOL)


def test_the_export_has_the_optimum_layout_and_configs_that_load(exported, tiny_model_dir):
    assert sorted(str(p.relative_to(exported)) for p in exported.rglob("*")) == [
        "config.json",
        "onnx",
        "onnx/model.onnx",
        "onnx/model_quantized.onnx",
        "preprocessor_config.json",
    ]
    for name in ("config.json", "preprocessor_config.json"):
        assert (exported / name).read_bytes() == (tiny_model_dir / name).read_bytes()
    config = AutoConfig.from_pretrained(exported)
    extractor = AutoFeatureExtractor.from_pretrained(exported)
    assert config.model_type == "audio-spectrogram-transformer"
    assert config.id2label == AutoConfig.from_pretrained(tiny_model_dir).id2label
    assert extractor.max_length == config.max_length

    graph = onnx.load(str(exported / "onnx" / "model.onnx")).graph
    onnx.checker.check_model(str(exported / "onnx" / "model.onnx"))
    (inp,), (out,) = graph.input, graph.output
    assert (inp.name, out.name) == ("input_values", "logits")
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", config.max_length, config.num_mel_bins]


def test_the_int8_graph_keeps_the_top_class_and_close_logits(exported, tiny_model_dir):
    inputs = features(tiny_model_dir, 8, seed=7)
    fp32 = run_onnx(exported / "onnx" / "model.onnx", inputs)
    int8 = run_onnx(exported / "onnx" / "model_quantized.onnx", inputs)
    np.testing.assert_array_equal(int8.argmax(axis=1), fp32.argmax(axis=1))
    assert np.abs(int8 - fp32).max() < INT8_ATOL
    # Quantized for real: int8 weight initializers, and a smaller file.
    quantized = onnx.load(str(exported / "onnx" / "model_quantized.onnx"))
    assert any(t.data_type == onnx.TensorProto.INT8 for t in quantized.graph.initializer)
    assert (exported / "onnx" / "model_quantized.onnx").stat().st_size < (
        exported / "onnx" / "model.onnx"
    ).stat().st_size


def run_cli(*args) -> subprocess.CompletedProcess:
    # The Hub stays off in the subprocess too (conftest set it in this process's environment).
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [*COMMAND, "export-onnx", *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def partial_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(PARTIAL_SUFFIX))


def test_the_command_exports_and_refuses_an_occupied_folder(tiny_model_dir, tmp_path):
    out = tmp_path / "export"
    result = run_cli(tiny_model_dir, out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out.absolute())
    assert (out / "onnx" / "model.onnx").is_file()
    assert not (out / "onnx" / "model_quantized.onnx").exists()
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    result = run_cli(tiny_model_dir, out, "--int8")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vocalsound-hf export-onnx: error: ")
    assert "already exists" in lines[0]
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert partial_leftovers(tmp_path) == []


def _not_an_ast(folder: Path, tiny_model_dir: Path) -> Path:
    BertConfig(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8
    ).save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"")
    shutil.copyfile(tiny_model_dir / "preprocessor_config.json", folder / "preprocessor_config.json")
    return folder


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "no such directory"),
        ("file", "not a directory"),
        ("empty", "not a saved model"),
        ("bert", "expected 'audio-spectrogram-transformer'"),
    ],
)
def test_bad_input_is_one_error_line(tiny_model_dir, tmp_path, capsys, case, reason):
    source = tmp_path / "source"
    if case == "file":
        source.write_text("{}")
    elif case == "empty":
        source.mkdir()
    elif case == "bert":
        _not_an_ast(source, tiny_model_dir)
    out = tmp_path / "out"
    with pytest.raises(ModelLoadError, match=reason):
        export_onnx(source, out)
    assert main(["export-onnx", str(source), str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vocalsound-hf export-onnx: error: ")
    assert reason in lines[0]
    assert not out.exists()
    assert partial_leftovers(tmp_path) == []


def test_an_empty_out_dir_is_filled(tiny_model_dir, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    assert export_onnx(tiny_model_dir, out) == out
    assert (out / "onnx" / "model.onnx").is_file()
    assert json.loads((out / "config.json").read_text())["model_type"] == "audio-spectrogram-transformer"
