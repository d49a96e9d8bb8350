"""Kaldi log-mel fbank features as AST expects them.

Pure functions here; the stateful, randomised training augmentations live in ``augment``.
"""

from __future__ import annotations

from .release import PAPER_NORM_MEAN, PAPER_NORM_STD, TARGET_SAMPLING_RATE


def make_feature_extractor(
    max_length: int = 512,
    mean: float = PAPER_NORM_MEAN,
    std: float = PAPER_NORM_STD,
    num_mel_bins: int = 128,
):
    """transformers' ``ASTFeatureExtractor`` configured for VocalSound.

    ``max_length`` must equal the model's ``input_tdim`` (``config.max_length``): transformers ignores a
    ``max_length`` passed at call time, so it is set on the instance and saved with it.
    """
    from transformers import ASTFeatureExtractor

    return ASTFeatureExtractor(
        sampling_rate=TARGET_SAMPLING_RATE,
        num_mel_bins=num_mel_bins,
        max_length=max_length,
        mean=float(mean),
        std=float(std),
        do_normalize=True,
        return_attention_mask=False,
    )
