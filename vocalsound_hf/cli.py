"""``vocalsound-hf``: a thin command line over the library API.

Each sub-command parses its arguments and calls one library function. The choices come from the modules
that define them (``release``, ``models.presets``: plain Python). The library itself (torch, transformers,
datasets) is imported inside the command that needs it, so that ``vocalsound-hf --help`` and argument
errors answer at once instead of after seconds of imports.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .events import EVENT_FORMATS
from .models.presets import AUDIOSET_AST, HEADS, MODEL_SIZES, MODEL_VARIABLE
from .release import CONFIGS, PAPER_NORM_MEAN, PAPER_NORM_STD, SOUNDSCAPE_SPLITS

logger = logging.getLogger("vocalsound_hf")


def _synth_release(args: argparse.Namespace) -> None:
    from .data.synth_release import make_synthetic_release

    path = make_synthetic_release(
        args.out,
        sampling_rate=args.sampling_rate,
        num_speakers=args.speakers,
        seed=args.seed,
        as_zip=args.zip,
    )
    print(path)


def _export_dataset(args: argparse.Namespace) -> None:
    from .data.export import export_dataset

    out = export_dataset(
        args.data_dir,
        args.out,
        config=args.config,
        push_to_hub=args.push_to_hub,
        num_proc=args.num_proc,
        skip_bad_audio=args.skip_bad_audio,
    )
    print(out)


def _norm_stats(args: argparse.Namespace) -> None:
    from .data.stats import norm_stats_of_release

    stats = norm_stats_of_release(args.data_dir, config=args.config)
    # In full: passed back as --norm_mean / --norm_std, they give exactly the features of the card's stats.
    print(f"mean={stats.mean!r} std={stats.std!r}")


def _init_model(args: argparse.Namespace) -> None:
    from .models.build import init_model_dir
    from .models.checkpoints import missing_location

    # A missing path would otherwise be looked up as a Hub id, and fail with the Hub's wording.
    problem = args.audioset and missing_location(args.audioset)
    if problem:
        raise FileNotFoundError(f"--audioset {args.audioset}: {problem}")

    path = init_model_dir(
        args.out_dir,
        model_size=args.model_size,
        input_tdim=args.input_tdim,
        fstride=args.fstride,
        tstride=args.tstride,
        imagenet_pretrain=args.imagenet,
        audioset_pretrain=args.audioset,
        head=args.head,
        norm_mean=args.norm_mean,
        norm_std=args.norm_std,
        seed=args.seed,
    )
    print(path)


def _convert_checkpoint(args: argparse.Namespace) -> None:
    from .models.conversion import convert_original_checkpoint

    path = convert_original_checkpoint(
        args.checkpoint,
        args.out_dir,
        label_csv=args.label_csv,
        fstride=args.fstride,
        tstride=args.tstride,
        input_tdim=args.input_tdim,
        norm_mean=args.norm_mean,
        norm_std=args.norm_std,
    )
    print(path)


def _predict(args: argparse.Namespace) -> None:
    from transformers.utils import logging as transformers_logging

    from .inference.predict import predict_files, split_model_argument

    # The weight-loading progress bar would interleave with the results and the one-line errors.
    transformers_logging.disable_progress_bar()
    model, audio = split_model_argument(args.inputs)
    predict_files(model, audio, top_k=args.top_k, as_json=args.json, fast=args.fast, recursive=args.recursive)


def _detect(args: argparse.Namespace) -> None:
    from transformers.utils import logging as transformers_logging

    from .inference.detect_files import detect_files
    from .inference.predict import default_model

    transformers_logging.disable_progress_bar()
    detect_files(
        args.model or default_model(),
        args.recordings,
        output_format=args.format,
        out=args.out,
        thresholds_file=args.thresholds,
        hop_s=args.hop,
        fast=args.fast,
        recursive=args.recursive,
    )


def _export_onnx(args: argparse.Namespace) -> None:
    from transformers.utils import logging as transformers_logging

    from .inference.onnx_export import export_onnx

    # The weight-loading progress bar says nothing here; the path printed at the end is the result.
    transformers_logging.disable_progress_bar()
    print(export_onnx(args.model_dir, args.out_dir, int8=args.int8))


def _add_predict_parser(sub) -> None:
    """``predict``: audio files, or directories of them, classified with a saved model."""
    p = sub.add_parser("predict", help="classify audio files with a saved model")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="[MODEL] AUDIO",
        help=f"model directory or Hub id (default: ${MODEL_VARIABLE}, else the zero-shot {AUDIOSET_AST}), then "
        "audio files (wav, flac, mp3, ogg, ...; any rate and channel count) or directories of them",
    )
    p.add_argument("--recursive", action="store_true", help="also classify the files in subdirectories")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print one JSON object per file")
    p.add_argument(
        "--fast", action="store_true", help="use the fast CPU path (int8 linear layers, bf16 attention)"
    )
    p.set_defaults(func=_predict)


def _add_detect_parser(sub) -> None:
    """``detect``: the sound events of long recordings."""
    p = sub.add_parser(
        "detect",
        help="find the vocal-sound events (class, onset, offset) of recordings, with counts per class",
    )
    p.add_argument("recordings", nargs="+", help="audio files or directories of them (any length)")
    p.add_argument(
        "--model",
        default=None,
        help=f"model directory or Hub id (default: ${MODEL_VARIABLE}, else {AUDIOSET_AST})",
    )
    p.add_argument(
        "--format", choices=EVENT_FORMATS, default="csv", help="csv table, JSON lines or Audacity labels"
    )
    p.add_argument("--out", default=None, help="output file (audacity: a folder); default: stdout")
    p.add_argument(
        "--thresholds",
        default=None,
        metavar="JSON",
        help="detection thresholds (default: the model's detection.json)",
    )
    p.add_argument(
        "--hop", type=float, default=None, metavar="S", help="window hop in seconds (default: 1/8 window)"
    )
    p.add_argument("--recursive", action="store_true", help="also take the files in subdirectories")
    p.add_argument("--fast", action="store_true", help="use the fast CPU path")
    p.set_defaults(func=_detect)


def _soundscapes(args: argparse.Namespace) -> None:
    from .data.soundscapes import make_soundscapes

    print(
        make_soundscapes(
            args.data_dir,
            args.out,
            split=args.split,
            count=args.count,
            duration_s=args.duration,
            seed=args.seed,
        )
    )


def _tune_detection(args: argparse.Namespace) -> None:
    from transformers.utils import logging as transformers_logging

    from .inference.tuning import tune_detection

    transformers_logging.disable_progress_bar()
    out = tune_detection(
        args.model,
        args.data_dir,
        out=args.out,
        split=args.split,
        count=args.count,
        duration_s=args.duration,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(out)


def _add_soundscape_arguments(p, split: str) -> None:
    """The soundscapes' source and size, shared by ``soundscapes`` and ``tune-detection``."""
    p.add_argument("--data-dir", required=True, help="a release folder or zip, or an exported dataset folder")
    p.add_argument("--split", choices=SOUNDSCAPE_SPLITS, default=split, help="clips from this split only")
    p.add_argument("--count", type=int, default=20, help="number of soundscapes")
    p.add_argument("--duration", type=float, default=60.0, metavar="S", help="seconds per soundscape")
    p.add_argument("--seed", type=int, default=0)


def _add_event_parsers(sub) -> None:
    """``soundscapes`` and ``tune-detection``: measuring detection, and choosing its thresholds."""
    p = sub.add_parser(
        "soundscapes",
        help="write synthetic soundscapes of held-out clips with their truth events (to score detect)",
    )
    p.add_argument("out", help="output folder (must not exist or be empty)")
    _add_soundscape_arguments(p, "test")
    p.set_defaults(func=_soundscapes)

    p = sub.add_parser(
        "tune-detection",
        help="choose a model's detection thresholds on validation soundscapes (detection.json)",
    )
    p.add_argument("model", help="model directory (or Hub id with --out)")
    _add_soundscape_arguments(p, "validation")
    p.add_argument("--out", default=None, help="thresholds file (default: MODEL/detection.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing thresholds file")
    p.set_defaults(func=_tune_detection)


def _add_export_onnx_parser(sub) -> None:
    """``export-onnx``: a saved model as ONNX for onnxruntime and transformers.js (optimum's layout)."""
    p = sub.add_parser(
        "export-onnx", help="export a saved model to ONNX (onnx/model.onnx and its configs) for onnxruntime"
    )
    p.add_argument("model_dir", help="a saved AST model directory")
    p.add_argument("out_dir", help="output folder (must not exist or be empty)")
    p.add_argument(
        "--int8", action="store_true", help="also write onnx/model_quantized.onnx (dynamic int8 weights)"
    )
    p.set_defaults(func=_export_onnx)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vocalsound-hf", description="VocalSound and the AST baseline on the Hugging Face stack."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth-release", help="write a synthetic VocalSound release in the official layout")
    p.add_argument("out", help="output folder (or the .zip path with --zip)")
    p.add_argument("--sampling-rate", type=int, choices=sorted(CONFIGS.values()), default=CONFIGS["16k"])
    p.add_argument(
        "--speakers", type=int, default=None, help="number of speakers (default: the embedded size)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--zip", action="store_true", help="write a zip archive laid out like the official one")
    p.set_defaults(func=_synth_release)

    p = sub.add_parser("export-dataset", help="write a script-free Hub dataset repository (Parquet + card)")
    p.add_argument("--data-dir", required=True, help="the unzipped release folder or its zip")
    p.add_argument("--out", required=True, help="folder of the dataset repository")
    p.add_argument("--config", choices=list(CONFIGS), default="16k")
    p.add_argument("--push-to-hub", metavar="REPO", default=None, help="also upload to this Hub dataset repo")
    p.add_argument("--num-proc", type=int, default=None)
    p.add_argument(
        "--skip-bad-audio", action="store_true", help="skip unreadable clips (reported) instead of failing"
    )
    p.set_defaults(func=_export_dataset)

    p = sub.add_parser(
        "norm-stats", help="fbank mean and std of the training split (every frame of every clip, no padding)"
    )
    p.add_argument("--data-dir", required=True, help="a release folder or zip, or an exported dataset folder")
    p.add_argument("--config", choices=list(CONFIGS), default="16k")
    p.set_defaults(func=_norm_stats)

    p = sub.add_parser("init-model", help="write an AST model directory ready for train_hf.py and pipeline")
    p.add_argument("out_dir")
    p.add_argument("--model-size", default="base384", choices=list(MODEL_SIZES))
    p.add_argument("--input-tdim", type=int, default=512)
    p.add_argument("--fstride", type=int, default=10)
    p.add_argument("--tstride", type=int, default=10)
    p.add_argument(
        "--imagenet", default=None, metavar="PATH", help="DeiT distilled checkpoint (timm file or HF model)"
    )
    p.add_argument(
        "--audioset", default=None, metavar="PATH", help="AST AudioSet checkpoint (HF dir / Hub id / .pth)"
    )
    p.add_argument("--head", choices=HEADS, default="new", help="audioset: zero-shot head")
    p.add_argument(
        "--norm-mean", type=float, default=PAPER_NORM_MEAN, help="fbank mean (default: the paper's)"
    )
    p.add_argument("--norm-std", type=float, default=PAPER_NORM_STD, help="fbank std (default: the paper's)")
    p.add_argument("--seed", type=int, default=None, help="seed for the randomly initialised parts")
    p.set_defaults(func=_init_model)

    p = sub.add_parser(
        "convert-checkpoint", help="convert an original AST .pth checkpoint to a transformers directory"
    )
    p.add_argument("checkpoint", help="the original .pth file")
    p.add_argument("out_dir")
    p.add_argument("--label-csv", default=None, help="index,mid,display_name CSV naming the classes")
    p.add_argument("--fstride", type=int, default=None, help="only if the tensors do not tell")
    p.add_argument("--tstride", type=int, default=None, help="only if the tensors do not tell")
    p.add_argument("--input-tdim", type=int, default=None, help="only if the tensors do not tell")
    p.add_argument("--norm-mean", type=float, default=None, help="fbank mean (default: the recipe's)")
    p.add_argument("--norm-std", type=float, default=None, help="fbank std (default: the recipe's)")
    p.set_defaults(func=_convert_checkpoint)

    _add_predict_parser(sub)
    _add_detect_parser(sub)
    _add_event_parsers(sub)
    _add_export_onnx_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        args.func(args)
    except (ValueError, OSError) as err:
        # Bad input is reported in one line, not as a traceback; some library messages span several lines.
        message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"vocalsound-hf {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
