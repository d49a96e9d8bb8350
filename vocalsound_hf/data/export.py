"""Export VocalSound as a script-free Hub dataset repository: Parquet shards with the audio embedded and a card.

The builder (``builder.VocalSound``) writes the Parquet shards itself (``datasets`` embeds the wav bytes
when the format is Parquet), so the export holds exactly the builder's data; this module arranges the
shards as a Hub repository, writes the dataset card (YAML: configs, features, splits, licence, task, norm
stats; the text from the ``dataset_card.md`` template next to it) and optionally uploads the folder.
"""

from __future__ import annotations

import logging
import os
import re
import string
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import datasets
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from .. import __version__
from ..fileio import sha256_file, staged_path
from ..release import CITATION, CLASS_NAMES, CONFIGS, HOMEPAGE, LICENSE, RELEASE_SHA256, RELEASE_URLS, SPLITS
from .builder import VocalSound
from .stats import NORM_STATS_KEY, NormStats, compute_norm_stats

logger = logging.getLogger(__name__)

CARD_TEMPLATE = "dataset_card.md"
EXPORT_INFO_KEY = "export_info"
# The YAML keys this module owns; a README.md without them was not written by an export.
_OWN_KEYS = ("configs", "dataset_info", NORM_STATS_KEY, EXPORT_INFO_KEY)
_SHARD = re.compile(r"-(?P<split>train|validation|test)(?:-(?P<index>\d{5})-of-(?P<count>\d{5}))?\.parquet$")
_REPO_PLACEHOLDER = "<user>/vocalsound"


def export_dataset(
    data_dir: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    config: str = "16k",
    push_to_hub: str | None = None,
    num_proc: int | None = None,
    skip_bad_audio: bool = False,
    max_shard_size: int | str = "500MB",
) -> Path:
    """Write one config of VocalSound as a Hub dataset repository folder and return its path.

    ``out`` is created, or updated when it holds an earlier export (another config's shards and card
    entries are kept); anything else there is refused. The new config is written under a temporary
    name and swapped in only once complete, so an interrupted export leaves ``out`` as it was.

    Args:
        data_dir: the unzipped release folder or its zip; ``None`` downloads the official zip.
        out: the repository folder.
        config: ``"16k"`` or ``"44k"``.
        push_to_hub: a Hub dataset repo id to upload the folder to (the only step that needs a network).
        num_proc: processes for building the shards.
        skip_bad_audio: skip unreadable clips (listed in the card) instead of failing.
        max_shard_size: the largest (uncompressed) Parquet shard.
    """
    if config not in CONFIGS:
        raise ValueError(f"config must be one of {sorted(CONFIGS)}, got {config!r}")
    out = Path(out).absolute()
    previous = _previous_card(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The builder leaves lock files next to its output folder: it builds in a folder of its own, outside
    # the staged repository.
    with staged_path(out) as staging, staged_path(out) as build_root:
        staging.mkdir()
        build_root.mkdir()
        start = time.perf_counter()
        builder = VocalSound(
            config_name=config,
            data_dir=None if data_dir is None else os.fspath(data_dir),
            skip_bad_audio=skip_bad_audio,
        )
        build_dir = build_root / "build"
        builder.download_and_prepare(
            output_dir=str(build_dir), file_format="parquet", num_proc=num_proc, max_shard_size=max_shard_size
        )
        shards = _arrange_shards(build_dir, staging / config)
        num_clips = sum(split.num_examples for split in builder.info.splits.values())
        logger.info(
            "wrote %d clips of config %s as %d Parquet shards in %.1f s",
            num_clips,
            config,
            sum(len(s) for s in shards.values()),
            time.perf_counter() - start,
        )
        train = datasets.load_dataset(
            "parquet", data_files={"train": [str(p) for p in shards["train"]]}, split="train", streaming=True
        )
        norm_stats = compute_norm_stats(train)
        card = _make_card(
            previous,
            config=config,
            info=builder.info,
            shards=shards,
            norm_stats=norm_stats,
            export_info=_export_info(data_dir, config, builder.skipped),
            repo_id=push_to_hub,
        )
        card.save(staging / "README.md")
        _install(staging, out, config)
    logger.info("exported VocalSound %s to %s (norm stats %s)", config, out, norm_stats)
    if push_to_hub:
        _push(out, push_to_hub, config)
    return out


def _previous_card(out: Path) -> DatasetCard | None:
    """The card of an earlier export in ``out``; refuse a folder holding anything else."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder: expected a new path or an earlier export")
    readme = out / "README.md"
    if readme.is_file():
        card = DatasetCard.load(readme)
        if all(key in card.data.to_dict() for key in _OWN_KEYS):
            return card
    if any(out.iterdir()):
        raise FileExistsError(
            f"{out} is not empty and is not an earlier VocalSound export (no README.md with "
            f"{', '.join(_OWN_KEYS)}): refusing to overwrite it; choose a new or empty folder"
        )
    return None


def _arrange_shards(build_dir: Path, config_dir: Path) -> dict[str, list[Path]]:
    """Move the builder's ``vocalsound-<split>[-i-of-n].parquet`` files to ``<config>/<split>-i-of-n.parquet``."""
    found: dict[str, list[Path]] = {split: [] for split in SPLITS}
    for path in sorted(build_dir.glob("*.parquet")):
        match = _SHARD.search(path.name)
        if match is None:
            raise RuntimeError(f"unexpected file {path.name} from the builder")
        found[match["split"]].append(path)
    config_dir.mkdir()
    shards: dict[str, list[Path]] = {}
    for split, paths in found.items():
        shards[split] = []
        for index, path in enumerate(paths):
            target = config_dir / f"{split}-{index:05d}-of-{len(paths):05d}.parquet"
            path.rename(target)
            shards[split].append(target)
    return shards


def _export_info(
    data_dir: str | os.PathLike | None, config: str, skipped: dict[str, list[tuple[str, str]]]
) -> dict[str, Any]:
    info: dict[str, Any] = {"vocalsound_hf_version": __version__, "datasets_version": datasets.__version__}
    if data_dir is None:
        info["source"] = RELEASE_URLS[config]
        if RELEASE_SHA256[config]:  # the builder has checked the download against it
            info["source_sha256"] = RELEASE_SHA256[config]
    else:
        source = Path(data_dir)
        info["source"] = source.name
        if source.is_file():
            info["source_sha256"] = sha256_file(source)
    info["skipped_clips"] = [
        f"{split}/{name}: {why}" for split, items in skipped.items() for name, why in items
    ]
    return info


def _size_category(num_clips: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if num_clips < bound:
            return name
    return "100K<n<1M"


def _per_config(card_data: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    entries = card_data.get(key) or []
    if isinstance(entries, dict):
        entries = [entries]
    return {entry["config_name"]: entry for entry in entries}


def _make_card(
    previous: DatasetCard | None,
    *,
    config: str,
    info: DatasetInfo,
    shards: dict[str, list[Path]],
    norm_stats: NormStats,
    export_info: dict[str, Any],
    repo_id: str | None,
) -> DatasetCard:
    old = previous.data.to_dict() if previous is not None else {}
    data = DatasetCardData(
        pretty_name="VocalSound",
        license=LICENSE,
        task_categories=["audio-classification"],
        tags=["audio", "vocal-sounds", "non-speech", "paralinguistics"],
        source_datasets=["original"],
    )
    # Keep the other config's entries of an earlier export; datasets merges its own two keys itself.
    for key in ("configs", "dataset_info"):
        if key in old:
            data[key] = old[key]
    shard_bytes = sum(p.stat().st_size for paths in shards.values() for p in paths)
    yaml_info = DatasetInfo(
        features=info.features, splits=info.splits, download_size=shard_bytes, dataset_size=info.dataset_size
    )
    DatasetInfosDict({config: yaml_info}).to_dataset_card_data(data)
    configs = {
        name: {"data_files": [{"split": split, "path": f"{name}/{split}-*"} for split in SPLITS]}
        for name in set(_per_config(data.to_dict(), "configs")) | {config}
    }
    default = "16k" if "16k" in configs else config
    configs[default]["default"] = True
    data["configs"] = []  # rewritten whole, so that exactly one config is the default
    MetadataConfigs(configs).to_dataset_card_data(data)

    stats = _per_config(old, NORM_STATS_KEY)
    stats[config] = norm_stats.card_entry(config)
    exports = _per_config(old, EXPORT_INFO_KEY)
    exports[config] = {"config_name": config, **export_info}
    data[NORM_STATS_KEY] = [stats[name] for name in sorted(stats)]
    data[EXPORT_INFO_KEY] = [exports[name] for name in sorted(exports)]

    infos = _per_config(data.to_dict(), "dataset_info")
    num_clips = sum(split["num_examples"] for split in infos[default]["splits"])
    data["size_categories"] = [_size_category(num_clips)]
    template = string.Template(files(__package__).joinpath(CARD_TEMPLATE).read_text(encoding="utf-8"))
    body = template.substitute(
        num_clips=f"{num_clips:,}",
        homepage=HOMEPAGE,
        repo_id=repo_id or _REPO_PLACEHOLDER,
        default_config=default,
        split_table="\n".join(_split_row(name, infos[name]) for name in sorted(infos)),
        class_names=", ".join(CLASS_NAMES),
        norm_table="\n".join(
            f"| {name} | {s['mean']:.7f} | {s['std']:.7f} |" for name, s in sorted(stats.items())
        ),
        package_version=__version__,
        datasets_version=datasets.__version__,
        build_notes="\n".join(_build_note(exports[name]) for name in sorted(exports)),
        citation=CITATION,
    )
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def _split_row(config: str, info: dict[str, Any]) -> str:
    counts = {split["name"]: split["num_examples"] for split in info["splits"]}
    return (
        f"| {config} | {CONFIGS[config]:,} Hz | " + " | ".join(f"{counts.get(s, 0):,}" for s in SPLITS) + " |"
    )


def _build_note(export: dict[str, Any]) -> str:
    source = export["source"] + (
        f" (sha256 `{export['source_sha256']}`)" if export.get("source_sha256") else ""
    )
    skipped = export.get("skipped_clips") or []
    note = f"- `{export['config_name']}`: built from {source}; "
    if skipped:
        return (
            note
            + f"{len(skipped)} unreadable clips were skipped: "
            + ", ".join(f"`{s}`" for s in skipped)
            + "."
        )
    return note + "every clip of the datafiles was readable."


def _install(staging: Path, out: Path, config: str) -> None:
    """Move the new config and card from ``staging`` into ``out``, replacing only that config's files."""
    if not out.exists():
        staging.rename(out)
        return
    old = out / config
    backup = staging / "previous"
    if old.exists():
        old.rename(backup)
    (staging / config).rename(old)
    os.replace(staging / "README.md", out / "README.md")


def _push(out: Path, repo_id: str, config: str) -> None:
    """Upload the config's shards and the card; the remote shards of that config are replaced."""
    # Imported here: the upload is the only step that needs the Hub client and a network.
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=out,
        allow_patterns=[f"{config}/*.parquet", "README.md"],
        delete_patterns=[f"{config}/*.parquet"],
        commit_message=f"Export VocalSound {config} with vocalsound-hf {__version__}",
    )
    logger.info("pushed %s to the Hub dataset %s (%s)", out, repo_id, getattr(commit, "commit_url", commit))
