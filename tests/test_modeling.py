"""build_ast, init_model_dir and the AST initialisations, against the original AST's reference outputs.

Cases B (ImageNet/DeiT initialisation) and C (AudioSet initialisation) of ../shared/reference/ast/README.md
go through the public code path: a timm DeiT file, an original ``.pth`` and an HF directory converted from it.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import REFERENCE_AST, converted_audioset_dir, synthetic_audioset_checkpoint
from transformers import ASTForAudioClassification, DeiTConfig, DeiTModel

from vocalsound_hf.cli import main
from vocalsound_hf.models.build import build_ast, init_model_dir
from vocalsound_hf.models.position_embeddings import adapt_position_embeddings
from vocalsound_hf.models.presets import LAYER_NORM_EPS, MODEL_SIZES
from vocalsound_hf.release import AUDIOSET_INDICES, CLASS_NAMES, PAPER_NORM_MEAN, PAPER_NORM_STD

DEIT_TINY = REFERENCE_AST / "deit_tiny_distilled_random.pt"
CASE_B = sorted(REFERENCE_AST.glob("case_b_*.pt"))
TENSOR_ATOL = 1e-6  # adapted pos_embed / patch conv, README section 8
LOGIT_ATOL = 1e-4  # saved config: layer_norm_eps 1e-6 everywhere
MATCHED_ATOL = 1e-5  # head LayerNorm patched to the original's 1e-5
WAV = REFERENCE_AST / "wav2_chirp_2p00s.wav"
# conftest's tiny_model_dir, rebuilt in-process
TINY_ARGS = dict(model_size="tiny224", input_tdim=128, fstride=16, tstride=16, num_hidden_layers=2)


def _set_head(model: ASTForAudioClassification, layernorm_weight, layernorm_bias, weight, bias) -> None:
    with torch.no_grad():
        model.classifier.layernorm.weight.copy_(layernorm_weight)
        model.classifier.layernorm.bias.copy_(layernorm_bias)
        model.classifier.dense.weight.copy_(weight)
        model.classifier.dense.bias.copy_(bias)


def _outputs(model: ASTForAudioClassification, x: torch.Tensor):
    """Pooled output, logits with the saved config, and logits with the head LayerNorm at the original eps."""
    with torch.no_grad():
        pooled = model.audio_spectrogram_transformer(x).pooler_output
        matched_head = copy.deepcopy(model.classifier)
        matched_head.layernorm.eps = 1e-5
        return pooled, model.classifier(pooled), matched_head(pooled)


def _param_count(hidden, intermediate, layers, f_dim, t_dim, labels) -> int:
    """Parameters of AST as the original lays it out, without DeiT's unused ImageNet heads."""
    embeddings = hidden * 16 * 16 + hidden + 2 * hidden + (f_dim * t_dim + 2) * hidden
    block = (
        4 * (hidden * hidden + hidden) + 2 * 2 * hidden + 2 * hidden * intermediate + intermediate + hidden
    )
    head = 2 * hidden + hidden * labels + labels
    return embeddings + layers * block + 2 * hidden + head


@pytest.mark.parametrize("model_size", list(MODEL_SIZES))
def test_model_size_parameter_counts(model_size):
    preset = MODEL_SIZES[model_size]
    with torch.device("meta"):
        model = build_ast(label_dim=527, input_tdim=1024, model_size=model_size)
    config = model.config
    assert (config.hidden_size, config.num_attention_heads, config.intermediate_size) == (
        preset["hidden_size"],
        preset["num_attention_heads"],
        preset["intermediate_size"],
    )
    expected = _param_count(
        preset["hidden_size"], preset["intermediate_size"], preset["num_hidden_layers"], 12, 101, 527
    )
    assert model.num_parameters() == expected
    if model_size == "base384":
        # The original's training log: 88.132 M, which counts DeiT's two unused 768x1000 ImageNet heads.
        assert model.num_parameters() == 88_132_063 - 2 * (768 * 1000 + 1000)


def test_tiny_preset_matches_the_deit_tiny_weights():
    """tiny224 has DeiT-tiny's blocks: its count is the DeiT file's, adjusted for what AST changes."""
    deit = json.loads((REFERENCE_AST / "deit_tiny_distilled_random_keys.json").read_text())
    deit_values = sum(int(np.prod(entry["shape"])) for entry in deit["keys"])
    model = build_ast(fstride=10, tstride=10, input_tdim=100, model_size="tiny224")  # 12 x 9 grid
    dropped = (
        2 * (192 * 1000 + 1000) + 192 * 2 * 16 * 16 + (196 - 12 * 9) * 192
    )  # heads, 2 conv channels, grid
    added = 2 * 192 + 192 * 6 + 6  # the 6-way head
    assert model.num_parameters() == deit_values - dropped + added


@pytest.mark.parametrize("case", CASE_B, ids=lambda p: p.stem)
def test_case_b_imagenet_initialisation(case):
    ref = torch.load(case)
    args = ref["args"]
    model = build_ast(
        label_dim=args["label_dim"],
        fstride=args["fstride"],
        tstride=args["tstride"],
        input_fdim=args["input_fdim"],
        input_tdim=args["input_tdim"],
        imagenet_pretrain=DEIT_TINY,
        model_size=args["model_size"],
    )
    assert model.config.layer_norm_eps == LAYER_NORM_EPS == 1e-6
    delta = ref["state_dict_delta"]
    embeddings = model.audio_spectrogram_transformer.embeddings
    torch.testing.assert_close(
        embeddings.position_embeddings.data, delta["v.pos_embed"], atol=TENSOR_ATOL, rtol=0
    )
    torch.testing.assert_close(
        embeddings.patch_embeddings.projection.weight.data,
        delta["v.patch_embed.proj.weight"],
        atol=TENSOR_ATOL,
        rtol=0,
    )
    deit = torch.load(DEIT_TINY)
    assert torch.equal(embeddings.cls_token.data, deit["cls_token"])
    assert torch.equal(embeddings.distillation_token.data, deit["dist_token"])
    assert torch.equal(embeddings.patch_embeddings.projection.bias.data, deit["patch_embed.proj.bias"])
    assert embeddings.patch_embeddings.projection.stride == (args["fstride"], args["tstride"])

    # The new head's values come from the original's RNG stream; take them from the file.
    _set_head(model, *(delta[f"mlp_head.{i}.{k}"] for i in (0, 1) for k in ("weight", "bias")))
    pooled, logits, matched = _outputs(model, ref["input"])
    torch.testing.assert_close(pooled, ref["pooled"], atol=MATCHED_ATOL, rtol=0)
    torch.testing.assert_close(logits, ref["logits"], atol=LOGIT_ATOL, rtol=0)
    torch.testing.assert_close(matched, ref["logits"], atol=MATCHED_ATOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("input_tdim", [512, 1200])
def test_case_c_audioset_initialisation_from_original_pth(tmp_path_factory, input_tdim):
    """AudioSet init from an original .pth: time cut (512 frames) and bilinear resize (1200 frames)."""
    ref = torch.load(REFERENCE_AST / f"case_c_audioset_T{input_tdim}.pt")
    checkpoint = synthetic_audioset_checkpoint(tmp_path_factory, 10)
    model = build_ast(input_tdim=input_tdim, audioset_pretrain=checkpoint)
    embeddings = model.audio_spectrogram_transformer.embeddings
    torch.testing.assert_close(
        embeddings.position_embeddings.data, ref["pos_embed"], atol=TENSOR_ATOL, rtol=0
    )
    head = ref["mlp_head"]
    _set_head(model, *(head[f"mlp_head.{i}.{k}"] for i in (0, 1) for k in ("weight", "bias")))
    # One row: a base384 forward at 1430 tokens costs seconds on CPU; pos_embed above is compared whole.
    pooled, logits, matched = _outputs(model, ref["input"][:1])
    torch.testing.assert_close(pooled, ref["pooled"][:1], atol=LOGIT_ATOL, rtol=0)
    torch.testing.assert_close(logits, ref["logits"][:1], atol=LOGIT_ATOL, rtol=0)
    torch.testing.assert_close(matched, ref["logits"][:1], atol=MATCHED_ATOL, rtol=0)


@pytest.mark.slow
def test_case_c_audioset_initialisation_from_converted_directory(tmp_path_factory):
    """The HF-directory path (what a Hub id goes through) builds the same model as the .pth path."""
    ref = torch.load(REFERENCE_AST / "case_c_audioset_T512.pt")
    from_dir = build_ast(input_tdim=512, audioset_pretrain=converted_audioset_dir(tmp_path_factory, 10))
    from_pth = build_ast(
        input_tdim=512, audioset_pretrain=synthetic_audioset_checkpoint(tmp_path_factory, 10)
    )
    pos = from_dir.audio_spectrogram_transformer.embeddings.position_embeddings.data
    torch.testing.assert_close(pos, ref["pos_embed"], atol=TENSOR_ATOL, rtol=0)
    a, b = (
        from_dir.audio_spectrogram_transformer.state_dict(),
        from_pth.audio_spectrogram_transformer.state_dict(),
    )
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def tiny_audioset_dir(tmp_path_factory):
    """A small 527-way AST 'AudioSet checkpoint' in AudioSet label order, saved as an HF directory."""
    names = [f"class {i}" for i in range(527)]
    for index, name in zip(AUDIOSET_INDICES, CLASS_NAMES):
        names[index] = name
    torch.manual_seed(7)
    model = build_ast(label_dim=527, labels=names, **TINY_ARGS)
    with torch.no_grad():  # a trained-looking head, not PyTorch's default init
        model.classifier.layernorm.weight.normal_(1.0, 0.1)
        model.classifier.layernorm.bias.normal_(0.0, 0.1)
    path = tmp_path_factory.mktemp("tiny_audioset") / "model"
    model.save_pretrained(path)
    return path


def test_audioset_head_is_the_selected_rows(tiny_audioset_dir):
    source = ASTForAudioClassification.from_pretrained(tiny_audioset_dir)
    model = build_ast(head="audioset", audioset_pretrain=tiny_audioset_dir, **TINY_ARGS)
    rows = list(AUDIOSET_INDICES)
    assert torch.equal(model.classifier.dense.weight, source.classifier.dense.weight[rows])
    assert torch.equal(model.classifier.dense.bias, source.classifier.dense.bias[rows])
    assert torch.equal(model.classifier.layernorm.weight, source.classifier.layernorm.weight)
    assert torch.equal(model.classifier.layernorm.bias, source.classifier.layernorm.bias)
    assert [model.config.id2label[i] for i in range(6)] == list(CLASS_NAMES)
    assert model.config.problem_type == "single_label_classification"
    x = 0.5 * torch.randn(2, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, source(x).logits[:, rows], atol=1e-5, rtol=0)


def test_audioset_init_new_head_and_time_adaptation(tiny_audioset_dir):
    """A new head is PyTorch-default (not the AudioSet rows); the grid is cut from the centre in time."""
    source = ASTForAudioClassification.from_pretrained(tiny_audioset_dir)
    model = build_ast(audioset_pretrain=tiny_audioset_dir, **TINY_ARGS | {"input_tdim": 64})
    bound = 1 / 192**0.5
    assert model.classifier.dense.weight.abs().max() <= bound
    assert torch.equal(model.classifier.layernorm.weight, torch.ones(192))
    source_pos = source.audio_spectrogram_transformer.embeddings.position_embeddings.data
    grid = source_pos[0, 2:].reshape(8, 8, 192)  # 128 x 128 at stride 16 -> 8 x 8
    want = torch.cat(
        [source_pos[0, :2], grid[:, 2:6].reshape(-1, 192)]
    )  # 64 frames -> 4 columns from 8 // 2 - 2
    assert torch.equal(model.audio_spectrogram_transformer.embeddings.position_embeddings.data[0], want)


def test_imagenet_init_from_hf_deit_directory(tmp_path):
    torch.manual_seed(3)
    config = DeiTConfig(hidden_size=192, num_attention_heads=3, intermediate_size=768, num_hidden_layers=2)
    deit = DeiTModel(config, add_pooling_layer=False)
    with torch.no_grad():
        deit.embeddings.position_embeddings.normal_()
    deit.save_pretrained(tmp_path / "deit")
    geometry = {"input_tdim": 100, "fstride": 10, "tstride": 10}
    model = build_ast(imagenet_pretrain=tmp_path / "deit", **TINY_ARGS | geometry)
    ours = model.audio_spectrogram_transformer
    conv = deit.embeddings.patch_embeddings.projection.weight
    assert torch.allclose(
        ours.embeddings.patch_embeddings.projection.weight, conv.sum(1, keepdim=True), atol=1e-6
    )
    pos = deit.embeddings.position_embeddings.data[0]
    grid = pos[2:].reshape(14, 14, 192)[1:13, 3:12]  # 128 x 100 at stride 10 -> 12 x 9, cut from the centre
    assert torch.equal(
        ours.embeddings.position_embeddings.data[0], torch.cat([pos[:2], grid.reshape(-1, 192)])
    )
    assert torch.equal(ours.embeddings.distillation_token, deit.embeddings.distillation_token)
    theirs = deit.state_dict()
    for key, value in ours.state_dict().items():
        if key.startswith(("layers.", "layernorm.")):
            assert torch.equal(value, theirs[key]), key


def test_adapt_position_embeddings_interpolates_when_growing():
    pos = torch.randn(1, 2 + 3 * 4, 8, generator=torch.Generator().manual_seed(0))
    out = adapt_position_embeddings(pos, (3, 4), (5, 7))
    grid = pos[:, 2:].reshape(1, 3, 4, 8).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, size=(3, 7), mode="bilinear", align_corners=False)
    grid = torch.nn.functional.interpolate(grid, size=(5, 7), mode="bilinear", align_corners=False)
    assert torch.equal(out, torch.cat([pos[:, :2], grid.flatten(2).transpose(1, 2)], dim=1))
    with pytest.raises(ValueError, match=r"do not fit a 3x5 patch grid \(expected \[1, 17, D\]\)"):
        adapt_position_embeddings(pos, (3, 5), (5, 7))


def test_from_scratch_tokens_are_random_like_the_original():
    torch.manual_seed(0)
    embeddings = build_ast(**TINY_ARGS).audio_spectrogram_transformer.embeddings
    assert not torch.equal(embeddings.cls_token, embeddings.distillation_token)
    assert 0.015 < embeddings.position_embeddings.std().item() < 0.025


def test_saved_directory_loads_with_plain_transformers(tiny_model_dir, tmp_path):
    """conftest's tiny_model_dir reloads in a process without vocalsound_hf, with identical logits."""
    torch.manual_seed(0)
    expected_model = build_ast(**TINY_ARGS)  # init_model_dir(seed=0) seeds the same way
    x = 0.5 * torch.randn(2, 128, 128, generator=torch.Generator().manual_seed(1))
    torch.save(x, tmp_path / "x.pt")
    script = f"""
import sys, torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
model = AutoModelForAudioClassification.from_pretrained({str(tiny_model_dir)!r})
extractor = AutoFeatureExtractor.from_pretrained({str(tiny_model_dir)!r})
assert type(model).__name__ == "ASTForAudioClassification"
assert type(extractor).__name__ == "ASTFeatureExtractor"
assert extractor.max_length == model.config.max_length == 128
with torch.no_grad():
    torch.save(model(torch.load({str(tmp_path / "x.pt")!r})).logits, {str(tmp_path / "logits.pt")!r})
assert not [m for m in sys.modules if m.startswith("vocalsound_hf")]
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, capture_output=True)
    with torch.no_grad():
        expected = expected_model(x).logits
    assert torch.equal(torch.load(tmp_path / "logits.pt"), expected)


def test_pipeline_on_a_wav_file_returns_the_six_labels(tiny_model_dir):
    from transformers import AutoFeatureExtractor, pipeline

    classifier = pipeline("audio-classification", model=str(tiny_model_dir), device="cpu")
    scores = classifier(str(WAV), top_k=10)
    assert sorted(s["label"] for s in scores) == sorted(CLASS_NAMES)
    assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-5)  # softmax: single-label
    extractor = AutoFeatureExtractor.from_pretrained(tiny_model_dir)
    assert (extractor.mean, extractor.std) == (PAPER_NORM_MEAN, PAPER_NORM_STD)
    assert extractor.max_length == classifier.model.config.max_length
    audio, rate = sf.read(WAV, dtype="float32")
    assert extractor(audio, sampling_rate=rate, return_tensors="pt")["input_values"].shape == (1, 128, 128)
    sigmoid = classifier(str(WAV), top_k=6, function_to_apply="sigmoid")
    softmax = {s["label"]: s["score"] for s in scores}
    logits = torch.logit(torch.tensor([s["score"] for s in sigmoid]))
    want = torch.softmax(logits, 0)
    np.testing.assert_allclose([softmax[s["label"]] for s in sigmoid], want.numpy(), atol=1e-5)


def test_init_model_dir_is_seeded_and_leaves_global_rng_alone(tmp_path):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = init_model_dir(tmp_path / "a", seed=5, **TINY_ARGS)
    after = torch.rand(1)
    b = init_model_dir(tmp_path / "b", seed=5, **TINY_ARGS)
    c = init_model_dir(tmp_path / "c", seed=6, **TINY_ARGS)
    assert torch.equal(before, after)
    load = ASTForAudioClassification.from_pretrained
    wa, wb, wc = (load(p).classifier.dense.weight for p in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_cli_init_model(tmp_path, capsys):
    out = tmp_path / "cli_model"
    argv = ["init-model", str(out), "--model-size", "tiny224", "--input-tdim", "64", "--fstride", "16"]
    assert main(argv + ["--tstride", "16", "--norm-mean", "-4.5", "--norm-std", "3.5", "--seed", "0"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    config = json.loads((out / "config.json").read_text())
    extractor = json.loads((out / "preprocessor_config.json").read_text())
    assert (config["max_length"], config["hidden_size"], config["time_stride"]) == (64, 192, 16)
    assert (extractor["max_length"], extractor["mean"], extractor["std"]) == (64, -4.5, 3.5)
    assert main(["init-model", str(tmp_path / "x"), "--model-size", "tiny224", "--head", "audioset"]) == 2
    assert "pass audioset_pretrain" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_nothing_half_written_when_saving_fails(tmp_path, monkeypatch):
    from transformers import ASTFeatureExtractor

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ASTFeatureExtractor, "save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        init_model_dir(tmp_path / "model", **TINY_ARGS)
    assert list(tmp_path.iterdir()) == []


def test_existing_directory_is_refused(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not an empty directory"):
        init_model_dir(tmp_path / "model", **TINY_ARGS)
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 200}, "hidden_size 200 is not divisible by num_attention_heads 3"),
        ({"label_dim": 5, "labels": CLASS_NAMES}, "label_dim is 5 but 6 labels were given"),
        ({"max_length": 100}, "set 'max_length' with the 'input_tdim' argument"),
        ({"num_layers": 4}, "'num_layers' is not an ASTConfig field"),
        ({"input_tdim": 10}, r"the input \(128 mel bins x 10 frames\) is smaller than one 16x16 patch"),
        ({"fstride": 0}, "fstride must be a positive integer, got 0"),
        ({"model_size": "huge"}, "model_size must be one of tiny224, small224, base224, base384, got 'huge'"),
        ({"head": "audioset"}, "pass audioset_pretrain"),
        ({"head": "linear"}, "head must be one of new, audioset"),
        ({"imagenet_pretrain": DEIT_TINY, "audioset_pretrain": DEIT_TINY}, "not both"),
        (
            {"imagenet_pretrain": DEIT_TINY, "model_size": "base384"},
            "expects a 24x24 DeiT positional grid.* 14x14",
        ),
        (
            {"imagenet_pretrain": DEIT_TINY, "num_hidden_layers": 4},
            "num_hidden_layers=4 .your override. contradicts",
        ),
    ],
)
def test_bad_arguments_name_both_sides(kwargs, message):
    kwargs = {"model_size": "tiny224", "input_tdim": 128, "fstride": 16, "tstride": 16, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_ast(**kwargs)


def test_audioset_source_must_agree_with_the_request(tiny_audioset_dir, tmp_path):
    with pytest.raises(ValueError, match=r"fstride=10 differs from the AudioSet checkpoint .* fstride=16"):
        build_ast(audioset_pretrain=tiny_audioset_dir, **TINY_ARGS | {"fstride": 10, "tstride": 10})
    with pytest.raises(
        ValueError, match=r"num_hidden_layers=4 .your override. contradicts .* num_hidden_layers=2"
    ):
        build_ast(audioset_pretrain=tiny_audioset_dir, **TINY_ARGS | {"num_hidden_layers": 4})
    DeiTModel(DeiTConfig(num_hidden_layers=1)).save_pretrained(tmp_path / "deit")
    with pytest.raises(ValueError, match="'deit' model, expected 'audio-spectrogram-transformer'"):
        build_ast(audioset_pretrain=tmp_path / "deit", **TINY_ARGS)
    wrong = ASTForAudioClassification.from_pretrained(tiny_audioset_dir)
    wrong.config.id2label = {i: f"x{i}" for i in range(527)}
    with pytest.raises(ValueError, match="names AudioSet output 16 'x16', expected 'Laughter'"):
        build_ast(head="audioset", audioset_pretrain=wrong, **TINY_ARGS)
    with pytest.raises(
        ValueError, match="needs a 527-way AudioSet head, but ASTForAudioClassification has 6 labels"
    ):
        build_ast(head="audioset", audioset_pretrain=build_ast(**TINY_ARGS), **TINY_ARGS)
