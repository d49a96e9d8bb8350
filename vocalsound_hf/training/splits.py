"""The splits a run needs, from a raw release or a Hub/exported dataset, checked before any training step."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import datasets

from ..audio import decode_as_model_input
from ..data.builder import load_vocalsound
from ..metrics import METADATA_COLUMNS


def load_splits(
    data_dir: str | None,
    dataset_name: str | None,
    dataset_config_name: str | None,
    splits: Iterable[str],
    **load_kwargs: Any,
) -> datasets.DatasetDict:
    """The needed splits of a raw release (``data_dir``, through the builder) or of a Hub/exported dataset.

    Audio is decoded as 16 kHz mono, as every path decodes it (``audio.decode_as_model_input``). Raises ``ValueError``
    naming the dataset, split and column when a split is missing or empty, or has no ``audio`` (``Audio``)
    or ``label`` (``ClassLabel``) column.
    """
    if (data_dir is None) == (dataset_name is None):
        raise ValueError(
            "pass exactly one of --data_dir (a raw VocalSound release) and --dataset_name (a Hub id or folder)"
        )
    if data_dir is not None:
        source = data_dir
        dataset = load_vocalsound(data_dir, **load_kwargs)
    else:
        source = dataset_name
        try:
            dataset = datasets.load_dataset(dataset_name, dataset_config_name)
        except (
            ValueError
        ) as error:  # e.g. a split file without rows: "Instruction 'test' corresponds to no data"
            raise ValueError(f"{source}: cannot load the dataset: {error}") from error
    if not isinstance(dataset, datasets.DatasetDict):
        raise ValueError(f"{source}: expected a dataset with splits, got {type(dataset).__name__}")
    splits = list(splits)
    for split in splits:
        _check_split(dataset, split, source)
    names = {split: dataset[split].features["label"].names for split in splits}
    if len({tuple(n) for n in names.values()}) > 1:
        raise ValueError(f"{source}: the splits name their labels differently: {names}")
    dataset = datasets.DatasetDict({split: dataset[split] for split in splits})
    return decode_as_model_input(dataset)


def _check_split(dataset: datasets.DatasetDict, split: str, source: str) -> None:
    if split not in dataset:
        raise ValueError(f"{source}: no {split!r} split (found: {', '.join(dataset) or 'none'})")
    columns = dataset[split].features
    for column, kind in (("audio", datasets.Audio), ("label", datasets.ClassLabel)):
        if not isinstance(columns.get(column), kind):
            raise ValueError(
                f"{source}: split {split!r} has no {column!r} column of type datasets.{kind.__name__} "
                f"(columns: {', '.join(columns)}; {column!r} is {type(columns.get(column)).__name__})"
            )
    if len(dataset[split]) == 0:
        raise ValueError(f"{source}: split {split!r} is empty")


def check_labels(model_config, label_names: Sequence[str], source: str) -> None:
    """Raise ``ValueError`` unless the model's ``id2label`` is exactly the dataset's ``label`` names, in order."""
    model_labels = [model_config.id2label[i] for i in range(model_config.num_labels)]
    if model_labels != list(label_names):
        raise ValueError(
            f"the labels of {source} ({list(label_names)}) do not match the model's id2label ({model_labels}); "
            "the class ids must mean the same classes"
        )


def clip_metadata(split: datasets.Dataset) -> dict[str, list[str | None]]:
    """The split's speaker metadata used by the subgroup metrics, as strings (``ClassLabel`` ids decoded)."""
    metadata = {}
    for column in METADATA_COLUMNS:
        if column not in split.column_names:
            continue
        feature = split.features[column]
        values = list(split.with_format(None)[column])
        if isinstance(feature, datasets.ClassLabel):
            values = [None if v is None or v < 0 else feature.int2str(v) for v in values]
        metadata[column] = values
    return metadata
