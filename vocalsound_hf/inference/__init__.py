"""Inference: classify clips and long recordings with a saved AST model, for ``vocalsound-hf predict`` and the Space.

- ``classifier``: ``AudioClassifier`` (features, sliding windows, silence, the overall label) and its results.
- ``fast``: the fast CPU path (int8 linear layers, bf16 attention, a last layer for the pooled tokens only).
- ``predict``: ``predict_files``, the ``predict`` command's classification and printing.

Files are decoded by ``vocalsound_hf.audio.load_audio``.
"""
