"""VocalSound and the Audio Spectrogram Transformer baseline on the Hugging Face stack.

The public API is imported lazily: ``import vocalsound_hf`` loads no torch, transformers, datasets or
gradio; each name pulls in its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "CLASS_NAMES": "release",
    "make_synthetic_release": "data.synth_release",
    "VocalSound": "data.builder",
    "load_vocalsound": "data.builder",
    "export_dataset": "data.export",
    "make_feature_extractor": "features",
    "batch_fbank": "features",
    "compute_norm_stats": "data.stats",
    "build_ast": "models.build",
    "init_model_dir": "models.build",
    "MODEL_SIZES": "models.presets",
    "convert_original_checkpoint": "models.conversion",
    "AudioClassifier": "inference.classifier",
    "load_metric": "metrics",
}

__all__ = [
    "CLASS_NAMES",
    "MODEL_SIZES",
    "AudioClassifier",
    "VocalSound",
    "batch_fbank",
    "build_ast",
    "compute_norm_stats",
    "convert_original_checkpoint",
    "export_dataset",
    "init_model_dir",
    "load_metric",
    "load_vocalsound",
    "make_feature_extractor",
    "make_synthetic_release",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .data.builder import VocalSound, load_vocalsound
    from .data.export import export_dataset
    from .data.stats import compute_norm_stats
    from .data.synth_release import make_synthetic_release
    from .features import batch_fbank, make_feature_extractor
    from .inference.classifier import AudioClassifier
    from .metrics import load_metric
    from .models.build import build_ast, init_model_dir
    from .models.conversion import convert_original_checkpoint
    from .models.presets import MODEL_SIZES
    from .release import CLASS_NAMES


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vocalsound_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
