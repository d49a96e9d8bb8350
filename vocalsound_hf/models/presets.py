"""The original AST's presets and patch geometry, in plain Python so that the command line can offer them.

Nothing here imports torch or transformers: ``vocalsound-hf --help`` takes its choices from this module.

LayerNorm eps: the original uses 1e-6 in the blocks and final norm (timm) and PyTorch's 1e-5 in the head;
``ASTConfig`` has one ``layer_norm_eps`` for all of them. We use 1e-6 (``LAYER_NORM_EPS``), so every block
matches exactly and only the head LayerNorm differs, by about 1e-5 in the logits.
"""

from __future__ import annotations

# The distilled DeiT models behind the original presets; original_hw is the side of their square
# positional grid (224 / 16 = 14, 384 / 16 = 24).
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny224": {
        "hidden_size": 192,
        "num_attention_heads": 3,
        "intermediate_size": 768,
        "num_hidden_layers": 12,
        "original_hw": 14,
    },
    "small224": {
        "hidden_size": 384,
        "num_attention_heads": 6,
        "intermediate_size": 1536,
        "num_hidden_layers": 12,
        "original_hw": 14,
    },
    "base224": {
        "hidden_size": 768,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "original_hw": 14,
    },
    "base384": {
        "hidden_size": 768,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "original_hw": 24,
    },
}
# "new": a fresh head; "audioset": the VocalSound rows of an AudioSet checkpoint's head.
HEADS: tuple[str, ...] = ("new", "audioset")
# Where the encoder's weights come from: nowhere, a distilled DeiT, or an AudioSet AST checkpoint.
INITS: tuple[str, ...] = ("scratch", "imagenet", "audioset")
LAYER_NORM_EPS = 1e-6
PATCH_SIZE = 16
AUDIOSET_NUM_LABELS = 527
# The public AudioSet AST (mAP 0.459): restricted to the six VocalSound classes, a zero-shot classifier.
AUDIOSET_AST = "MIT/ast-finetuned-audioset-10-10-0.4593"
# The environment variable naming the model that predict, detect and the Space use when none is given.
MODEL_VARIABLE = "VOCALSOUND_MODEL"
AST_MODEL_TYPE = "audio-spectrogram-transformer"


def patch_grid(input_fdim: int, input_tdim: int, fstride: int, tstride: int, patch_size: int = PATCH_SIZE):
    """``(f_dim, t_dim)``: the patch grid of an ``input_fdim`` x ``input_tdim`` spectrogram, as the original's
    ``get_shape`` (and transformers' ``ASTEmbeddings.get_shape``) computes it."""
    for name, stride in (("fstride", fstride), ("tstride", tstride)):
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"{name} must be a positive integer, got {stride!r}")
    if input_fdim < patch_size or input_tdim < patch_size:
        raise ValueError(
            f"the input ({input_fdim} mel bins x {input_tdim} frames) is smaller than one "
            f"{patch_size}x{patch_size} patch"
        )
    return (input_fdim - patch_size) // fstride + 1, (input_tdim - patch_size) // tstride + 1
