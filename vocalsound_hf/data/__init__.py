"""The data stage: the VocalSound release read, built into a ``datasets`` dataset, exported and imitated.

The official release (or a synthetic stand-in in the same layout) becomes the train/validation/test
splits with speaker metadata, the fbank normalisation stats of the training split, and a script-free Hub
dataset repository. Nothing here imports the models, training or inference stages.

- ``reader``: the release as plain files (layout, meta files, datafiles) to examples; no ``datasets``.
- ``audio_check``: the header check of every clip and the ``skip_bad_audio`` report.
- ``builder``: the ``VocalSound`` builder, ``load_vocalsound``, the download's sha256 check.
- ``stats``: the fbank mean and std of a split, as the original AST computes them, and reading them back.
- ``export``: ``export_dataset``, Parquet shards and the dataset card (template ``dataset_card.md``).
- ``synth_release``: ``make_synthetic_release``, the writer of a synthetic release's files.
- ``synth_plan``: the synthetic release's speakers and clips, and which clips are broken.
- ``synth_sounds``: the synthetic voices and the six vocal-sound events.
"""
