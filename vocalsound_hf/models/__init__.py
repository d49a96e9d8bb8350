"""The Audio Spectrogram Transformer as transformers' ``ASTForAudioClassification``, built the original way.

transformers provides the model, its config and its feature extractor; this stage adds what the original AST
(YuanGongND/ast, ``ASTModel``) has and transformers lacks, and everything it builds saves and loads with
plain transformers.

- ``presets``: the DeiT ``model_size`` presets, heads, initialisations and the patch grid (no torch import).
- ``position_embeddings``: the original's adaptation of a positional grid to another patch grid.
- ``config``: the validated ``ASTConfig`` of a preset, geometry and label set.
- ``checkpoints``: safe state-dict reading, timm-to-AST key mapping and DeiT encoder reading.
- ``original``: an original AST ``.pth`` loaded into ``ASTForAudioClassification``.
- ``build``: ``build_ast`` and ``init_model_dir``, from scratch or with ImageNet / AudioSet initialisation.
- ``model_dir``: a model and its feature extractor saved atomically as one directory.
- ``conversion``: original checkpoints converted to transformers directories with their recipe's normalisation.
"""
