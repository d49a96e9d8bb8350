"""Training: fine-tuning and evaluating AST on VocalSound with the transformers ``Trainer`` (behind ``train_hf.py``).

The Trainer does the loop, distribution (through accelerate), mixed precision, checkpointing, resuming and
best-checkpoint selection; these modules add what VocalSound's recipe needs on top of it:

- ``recipes``: YAML/JSON recipes as command-line arguments;
- ``splits``: the splits a run needs, checked before any step, and the speaker metadata of a split;
- ``collator``: batches of 16 kHz waveforms (or cached fbanks) for the Trainer;
- ``pipeline``: AST features of a batch on its device, with the original recipe's augmentations;
- ``trainer``: the ``Trainer`` subclass (loss on soft targets, strict checkpoint loading);
- ``evaluation``: metrics of a whole split, subgroups included;
- ``averaging``: the original's checkpoint weight averaging;
- ``results`` and ``model_card``: the result files and the model card (a template, ``model_card.md``);
- ``outputs``: the output folder's checks and the final, atomic save of the model.
"""
