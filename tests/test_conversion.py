"""Conversion of original AST checkpoints (YuanGongND/ast ``.pth``) to transformers directories.

Parity (case D of ../shared/reference/ast/README.md) uses the synthetic stride-10 and stride-16 AudioSet
checkpoints that the shared script builds; the other tests use small hand-made checkpoints in the original
key format, so they run in a moment.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import AUDIOSET_CSV, REFERENCE_AST, converted_audioset_dir, original_state_dict
from transformers import AutoModelForAudioClassification

from vocalsound_hf.cli import main
from vocalsound_hf.models.conversion import convert_original_checkpoint
from vocalsound_hf.release import CLASS_NAMES

LOGIT_ATOL = 1e-4  # README section 8, for the saved config (one LayerNorm eps, 1e-6)
MATCHED_ATOL = 1e-5  # README section 8, with the head LayerNorm at the original's 1e-5


def save_original(tmp_path: Path, name: str = "orig.pth", **kwargs) -> tuple[Path, dict]:
    sd = original_state_dict(**kwargs)
    path = tmp_path / name
    torch.save(sd, path)
    return path, sd


def assert_nothing_written(parent: Path, out_dir: Path) -> None:
    assert not out_dir.exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{out_dir.name}.")], (
        "a temporary dir was left"
    )


@pytest.mark.slow
@pytest.mark.parametrize("stride", [10, 16])
def test_case_d_conversion_parity(tmp_path_factory, stride):
    """Converted synthetic checkpoints reproduce the original model's logits and pooled outputs (case D).

    A base384 forward at 1024 frames costs several seconds on CPU, so each stride runs one seeded and one
    real-audio row; the two strides together cover all four reference rows.
    """
    from transformers import AutoFeatureExtractor

    ref = torch.load(REFERENCE_AST / "case_d_conversion.pt")
    out = converted_audioset_dir(tmp_path_factory, stride)

    model = AutoModelForAudioClassification.from_pretrained(out)
    config = model.config
    assert (config.frequency_stride, config.time_stride, config.max_length, config.num_labels) == (
        stride,
        stride,
        1024,
        527,
    )
    assert config.problem_type == "multi_label_classification"
    assert config.id2label[0] == "Speech" and config.id2label[47] == "Cough"
    extractor = AutoFeatureExtractor.from_pretrained(out)
    assert (extractor.mean, extractor.std, extractor.max_length) == (-4.2677393, 4.5689974, 1024)

    row = 0 if stride == 10 else 1
    x = torch.stack([ref["input"][row], ref["input_wav"][1 - row]])
    with torch.no_grad():
        pooled = model.audio_spectrogram_transformer(x).pooler_output
        logits = model.classifier(pooled)
        matched_head = copy.deepcopy(model.classifier)
        matched_head.layernorm.eps = 1e-5  # the original head's PyTorch default
        matched = matched_head(pooled)
    want_pooled = torch.stack([ref[f"pooled_f{stride}"][row], ref[f"pooled_wav_f{stride}"][1 - row]])
    want_logits = torch.stack([ref[f"logits_f{stride}"][row], ref[f"logits_wav_f{stride}"][1 - row]])
    torch.testing.assert_close(pooled, want_pooled, atol=LOGIT_ATOL, rtol=0)
    torch.testing.assert_close(logits, want_logits, atol=LOGIT_ATOL, rtol=0)
    torch.testing.assert_close(matched, want_logits, atol=MATCHED_ATOL, rtol=0)


def test_round_trip_keeps_every_tensor(tmp_path):
    """Every original tensor arrives unchanged (qkv split by rows), DeiT's ImageNet heads dropped."""
    checkpoint, sd = save_original(tmp_path, hidden=64, layers=2, num_patches=144, num_labels=35)
    out = convert_original_checkpoint(checkpoint, tmp_path / "sc")
    # transformers 5 writes the Hub's (4.x) key names and renames them on load; compare what loads.
    saved = AutoModelForAudioClassification.from_pretrained(out).state_dict()
    p = "audio_spectrogram_transformer."
    expected = {
        p + "embeddings.cls_token": sd["module.v.cls_token"],
        p + "embeddings.distillation_token": sd["module.v.dist_token"],
        p + "embeddings.position_embeddings": sd["module.v.pos_embed"],
        p + "embeddings.patch_embeddings.projection.weight": sd["module.v.patch_embed.proj.weight"],
        p + "embeddings.patch_embeddings.projection.bias": sd["module.v.patch_embed.proj.bias"],
        p + "layernorm.weight": sd["module.v.norm.weight"],
        p + "layernorm.bias": sd["module.v.norm.bias"],
        "classifier.layernorm.weight": sd["module.mlp_head.0.weight"],
        "classifier.layernorm.bias": sd["module.mlp_head.0.bias"],
        "classifier.dense.weight": sd["module.mlp_head.1.weight"],
        "classifier.dense.bias": sd["module.mlp_head.1.bias"],
    }
    for i in range(2):
        src, dst = f"module.v.blocks.{i}.", f"{p}layers.{i}."
        for kind in ("weight", "bias"):
            qkv = torch.cat([saved[f"{dst}attention.{n}_proj.{kind}"] for n in "qkv"])
            assert torch.equal(qkv, sd[f"{src}attn.qkv.{kind}"])
            for a, b in (
                ("norm1", "layernorm_before"),
                ("norm2", "layernorm_after"),
                ("attn.proj", "attention.o_proj"),
            ):
                expected[f"{dst}{b}.{kind}"] = sd[f"{src}{a}.{kind}"]
            for fc in ("fc1", "fc2"):
                expected[f"{dst}mlp.{fc}.{kind}"] = sd[f"{src}mlp.{fc}.{kind}"]
    assert len(saved) == len(expected) + 2 * 2 * 3
    for key, value in expected.items():
        assert torch.equal(saved[key], value), key

    config = json.loads((out / "config.json").read_text())
    assert (config["hidden_size"], config["num_attention_heads"], config["num_hidden_layers"]) == (64, 1, 2)
    assert (config["max_length"], config["frequency_stride"], len(config["id2label"])) == (128, 10, 35)
    assert config["problem_type"] == "single_label_classification"
    assert config["layer_norm_eps"] == 1e-6
    preprocessor = json.loads((out / "preprocessor_config.json").read_text())
    assert (preprocessor["mean"], preprocessor["std"], preprocessor["max_length"]) == (
        -6.845978,
        5.5654526,
        128,
    )


def test_cli_converts_audioset_checkpoint_with_sigmoid_scores(tmp_path, capsys):
    """A 527-way checkpoint converts from the command line; pipeline scores are the sigmoid of the logits."""
    from transformers import AutoFeatureExtractor, pipeline

    checkpoint, _ = save_original(tmp_path, hidden=64, layers=1, num_patches=12 * 101, num_labels=527)
    out = tmp_path / "as"
    assert main(["convert-checkpoint", str(checkpoint), str(out), "--label-csv", str(AUDIOSET_CSV)]) == 0
    assert capsys.readouterr().out.strip() == str(out)

    wav = REFERENCE_AST / "wav2_chirp_2p00s.wav"
    scores = pipeline("audio-classification", model=str(out), device="cpu")(str(wav), top_k=527)
    model = AutoModelForAudioClassification.from_pretrained(out)
    audio, rate = sf.read(wav, dtype="float32")
    inputs = AutoFeatureExtractor.from_pretrained(out)(audio, sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        probs = torch.sigmoid(model(**inputs).logits)[0]
    got = {s["label"]: s["score"] for s in scores}
    want = {model.config.id2label[i]: p for i, p in enumerate(probs.tolist())}
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), atol=1e-6)
    assert got["Cough"] == pytest.approx(want["Cough"], abs=1e-6)


def test_vocalsound_checkpoint_gets_paper_normalisation_and_class_names(tmp_path):
    checkpoint, _ = save_original(tmp_path, hidden=64, layers=1, num_patches=12 * 50, num_labels=6)
    out = convert_original_checkpoint(checkpoint, tmp_path / "vs")
    config = json.loads((out / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(6)] == list(CLASS_NAMES)
    assert config["max_length"] == 512
    preprocessor = json.loads((out / "preprocessor_config.json").read_text())
    assert (preprocessor["mean"], preprocessor["std"], preprocessor["max_length"]) == (-3.05, 2.71, 512)


def test_explicit_geometry_for_unreleased_checkpoint(tmp_path):
    checkpoint, _ = save_original(tmp_path, hidden=64, layers=1, num_patches=8 * 12, num_labels=3)
    with pytest.raises(ValueError, match="96-patch positional grid.*pass fstride, tstride and input_tdim"):
        convert_original_checkpoint(checkpoint, tmp_path / "a")
    with pytest.raises(ValueError, match="not from a known recipe: pass norm_mean and norm_std"):
        convert_original_checkpoint(checkpoint, tmp_path / "b", fstride=16, tstride=16, input_tdim=192)
    with pytest.raises(ValueError, match="gives a 8x11 grid .88 patches., but .* has 96"):
        convert_original_checkpoint(checkpoint, tmp_path / "c", fstride=16, tstride=16, input_tdim=190)
    out = convert_original_checkpoint(
        checkpoint, tmp_path / "d", fstride=16, tstride=16, input_tdim=192, norm_mean=-5.0, norm_std=4.0
    )
    config = json.loads((out / "config.json").read_text())
    assert (config["frequency_stride"], config["time_stride"], config["max_length"]) == (16, 16, 192)
    assert_nothing_written(tmp_path, tmp_path / "a")


class NotATensor:
    """Pickling this needs code execution on load, which weights_only=True refuses."""


def _bad_checkpoint(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.pth"
    if kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "truncated":
        torch.save(original_state_dict(hidden=64, layers=1), path)
        path.write_bytes(path.read_bytes()[:5000])
    elif kind == "code":
        torch.save({"v.pos_embed": NotATensor()}, path)
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "foreign":
        torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    elif kind == "extra_keys":
        torch.save(original_state_dict(hidden=64, layers=1) | {"module.extra.weight": torch.zeros(2)}, path)
    elif kind == "wrong_shape":
        sd = original_state_dict(hidden=64, layers=1)
        sd["module.v.blocks.0.mlp.fc2.weight"] = torch.zeros(64, 100)
        torch.save(sd, path)
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("text", "not a checkpoint that loads safely"),
        ("truncated", "not a checkpoint that loads safely"),
        ("code", "not a checkpoint that loads safely"),
        ("tensor", "holds a Tensor, expected a state dict"),
        ("foreign", "not an original AST checkpoint: it has no v.pos_embed"),
        ("extra_keys", "not the keys of a timm DeiT/ViT|unexpected keys"),
        ("wrong_shape", "does not fit an AST of its own inferred shape"),
    ],
)
def test_bad_checkpoint_is_refused_and_nothing_written(tmp_path, kind, message):
    checkpoint = _bad_checkpoint(tmp_path, kind)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message) as err:
        convert_original_checkpoint(checkpoint, out)
    assert checkpoint.name in str(err.value)
    assert_nothing_written(tmp_path, out)


def test_label_csv_must_match_the_head(tmp_path, capsys):
    checkpoint, _ = save_original(tmp_path, hidden=64, layers=1, num_patches=144, num_labels=35)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"names 527 classes but .*orig.pth has 35 outputs"):
        convert_original_checkpoint(checkpoint, out, label_csv=AUDIOSET_CSV)
    assert_nothing_written(tmp_path, out)
    assert main(["convert-checkpoint", str(checkpoint), str(out), "--label-csv", str(AUDIOSET_CSV)]) == 2
    assert "527 classes" in capsys.readouterr().err
    assert_nothing_written(tmp_path, out)


def test_existing_output_is_not_overwritten(tmp_path):
    checkpoint, _ = save_original(tmp_path, hidden=64, layers=1, num_patches=144, num_labels=35)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty directory"):
        convert_original_checkpoint(checkpoint, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        convert_original_checkpoint(tmp_path / "absent.pth", tmp_path / "out")
