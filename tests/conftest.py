"""Shared fixtures. Tests never touch the network: the Hub is switched off before anything imports it."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
REFERENCE_AST = SHARED / "reference" / "ast"
REFERENCE_AUDIOSET = SHARED / "reference" / "audioset"
AUDIOSET_CSV = REFERENCE_AUDIOSET / "class_labels_indices.csv"
# Key lists of the shared script's synthetic AudioSet checkpoints, by stride.
KEY_LISTS = {10: "synthetic_audioset_keys.json", 16: "synthetic_audioset_f16_keys.json"}

# Size of the release the tests share: small enough to build in seconds, large enough for every quirk.
TEST_SPEAKERS = 24


@pytest.fixture(scope="session", autouse=True)
def _isolated_hf_cache(tmp_path_factory):
    """A fresh datasets cache per session, so a stale cache of a re-exported folder never serves old data."""
    cache = tmp_path_factory.mktemp("hf_datasets_cache")
    old = os.environ.get("HF_DATASETS_CACHE")
    os.environ["HF_DATASETS_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("HF_DATASETS_CACHE", None)
    else:
        os.environ["HF_DATASETS_CACHE"] = old


@pytest.fixture(scope="session")
def reference_ast() -> Path:
    assert REFERENCE_AST.is_dir(), f"the AST reference fixtures are missing: expected {REFERENCE_AST}"
    return REFERENCE_AST


@pytest.fixture(scope="session")
def synth_release(tmp_path_factory) -> Path:
    """A small synthetic 16 kHz release folder in the official layout (read-only by convention)."""
    from vocalsound_hf.data.synth_release import make_synthetic_release

    return make_synthetic_release(
        tmp_path_factory.mktemp("release16k") / "vs_release_16k",
        sampling_rate=16000,
        num_speakers=TEST_SPEAKERS,
        seed=0,
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small randomly initialised AST model directory (model + feature extractor), 128 frames."""
    from vocalsound_hf.models.build import init_model_dir

    return init_model_dir(
        tmp_path_factory.mktemp("tiny_model") / "model",
        model_size="tiny224",
        input_tdim=128,
        fstride=16,
        tstride=16,
        num_hidden_layers=2,
        seed=0,
    )


def synthetic_audioset_checkpoint(tmp_path_factory, stride: int) -> Path:
    """The shared script's synthetic AudioSet checkpoint, built once per session (about 350 MB, 5 s)."""
    path = tmp_path_factory.getbasetemp() / "synthetic_ast" / f"audioset_synthetic_{stride}_{stride}.pth"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        partial = path.with_suffix(".partial")
        script = REFERENCE_AST / "make_synthetic_audioset_checkpoint.py"
        keys = REFERENCE_AST / KEY_LISTS[stride]
        subprocess.run(
            [sys.executable, script, "--keys", keys, "--out", partial], check=True, capture_output=True
        )
        partial.rename(path)
    return path


def converted_audioset_dir(tmp_path_factory, stride: int) -> Path:
    """That checkpoint converted with the AudioSet label CSV, once per session."""
    out = tmp_path_factory.getbasetemp() / "synthetic_ast" / f"converted_{stride}_{stride}"
    if not out.exists():
        from vocalsound_hf.models.conversion import convert_original_checkpoint

        convert_original_checkpoint(
            synthetic_audioset_checkpoint(tmp_path_factory, stride), out, AUDIOSET_CSV
        )
    return out


def original_state_dict(hidden=64, layers=2, num_patches=144, num_labels=35, seed=0) -> dict:
    """A small random state dict in the original's released format (``module.v.*`` timm keys, mlp_head)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return 0.1 * torch.randn(*shape, generator=g)

    d = hidden
    sd = {
        "v.cls_token": rand(1, 1, d),
        "v.dist_token": rand(1, 1, d),
        "v.pos_embed": rand(1, num_patches + 2, d),
        "v.patch_embed.proj.weight": rand(d, 1, 16, 16),
        "v.patch_embed.proj.bias": rand(d),
    }
    for i in range(layers):
        b = f"v.blocks.{i}."
        sd |= {
            b + "norm1.weight": 1 + rand(d),
            b + "norm1.bias": rand(d),
            b + "attn.qkv.weight": rand(3 * d, d),
            b + "attn.qkv.bias": rand(3 * d),
            b + "attn.proj.weight": rand(d, d),
            b + "attn.proj.bias": rand(d),
            b + "norm2.weight": 1 + rand(d),
            b + "norm2.bias": rand(d),
            b + "mlp.fc1.weight": rand(4 * d, d),
            b + "mlp.fc1.bias": rand(4 * d),
            b + "mlp.fc2.weight": rand(d, 4 * d),
            b + "mlp.fc2.bias": rand(d),
        }
    sd |= {
        "v.norm.weight": 1 + rand(d),
        "v.norm.bias": rand(d),
        "v.head.weight": rand(1000, d),
        "v.head.bias": rand(1000),
        "v.head_dist.weight": rand(1000, d),
        "v.head_dist.bias": rand(1000),
        "mlp_head.0.weight": 1 + rand(d),
        "mlp_head.0.bias": rand(d),
        "mlp_head.1.weight": rand(num_labels, d),
        "mlp_head.1.bias": rand(num_labels),
    }
    return {"module." + k: v for k, v in sd.items()}
