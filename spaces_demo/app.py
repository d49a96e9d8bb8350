"""VocalSound Space: recognise laughter, sighs, coughs, throat clearing, sneezes and sniffs with AST.

Run ``python app.py [MODEL]``; MODEL (or the ``VOCALSOUND_MODEL`` environment variable) is a model directory
or a Hub id, by default the public AudioSet AST restricted to the six classes (zero-shot).
``VOCALSOUND_FAST=0`` switches from the fast CPU path (int8, bf16) to the fp32 model. The port comes from
``GRADIO_SERVER_PORT`` (default: the first free one from 7860). Everything but the page itself lives in the
library: decoding in ``vocalsound_hf.audio``, the classifier and the detector in ``vocalsound_hf.inference``.
The page's tabs are ``upload.py`` (a recording) and ``live_tab.py`` (the microphone, ``live.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

# No usage analytics leave a local run (Spaces set their own environment).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from live_tab import build_live_tab  # noqa: E402
from upload import MAX_DURATION_S, MAX_FILE_SIZE_MB, build_upload_tab  # noqa: E402

from vocalsound_hf.inference.classifier import AudioClassifier, ModelLoadError  # noqa: E402
from vocalsound_hf.models.presets import AUDIOSET_AST, MODEL_VARIABLE  # noqa: E402

logger = logging.getLogger("vocalsound_demo")

# Until a fine-tuned model is configured (VOCALSOUND_MODEL or argv), the public AudioSet AST, zero-shot.
DEFAULT_MODEL = AUDIOSET_AST
# Gradio's own cache of uploads and answers: swept every hour of files older than an hour.
DELETE_CACHE = (3600, 3600)


def zero_shot_notice(model_name: str) -> str:
    """What the page says when the model is an AudioSet AST that never saw VocalSound."""
    return (
        f"> **Zero-shot model.** This Space runs `{model_name}`, the AudioSet Audio Spectrogram Transformer "
        "restricted to the six VocalSound classes (the rows of their AudioSet classes in its head). It was "
        "**not fine-tuned on VocalSound**: its scores are independent sigmoid scores, which need not sum to "
        f"1, and it is less accurate than a fine-tuned model. To use one, set the `{MODEL_VARIABLE}` "
        "variable (the Space's *Settings → Variables*, or the environment of `python app.py`) to a "
        "fine-tuned model's Hub id or directory."
    )


def header_markdown(classifier: AudioClassifier, model_name: str) -> str:
    what = (
        "The AudioSet Audio Spectrogram Transformer, zero-shot,"
        if classifier.zero_shot
        else "An Audio Spectrogram Transformer fine-tuned on "
        "[VocalSound](https://github.com/YuanGongND/vocalsound)"
    )
    header = (
        "# VocalSound vocal sound classifier\n"
        f"{what} tells apart **laughter, sighs, coughs, throat clearing, sneezes and sniffs**. **Upload**: a "
        f"file (wav, flac, mp3, ogg; any sample rate and channel count) or a recording. Limits: "
        f"**{MAX_FILE_SIZE_MB} MB** per upload and **{MAX_DURATION_S / 60:g} minutes** of audio. Recordings "
        f"longer than the model's {classifier.window_s:.2f} s window are classified in overlapping windows, "
        "merged into events you can download (CSV, Audacity labels). **Live**: the microphone, events and "
        "counts as you record."
    )
    return header + ("\n\n" + zero_shot_notice(model_name) if classifier.zero_shot else "")


def build_demo(classifier: AudioClassifier, model_name: str = DEFAULT_MODEL) -> gr.Blocks:
    """The page: a header (saying so when the model is zero-shot), then the Upload and Live tabs."""
    with gr.Blocks(title="VocalSound: AST vocal sound classifier", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(header_markdown(classifier, model_name), elem_id="header")
        with gr.Tab("Upload"):
            build_upload_tab(classifier)
        with gr.Tab("Live"):
            build_live_tab(classifier)
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "model",
        nargs="?",
        default=os.environ.get(MODEL_VARIABLE, DEFAULT_MODEL),
        help=f"model directory or Hub id (default: ${MODEL_VARIABLE} or {DEFAULT_MODEL}, zero-shot)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    fast = os.environ.get("VOCALSOUND_FAST", "1") != "0"
    try:
        classifier = AudioClassifier.from_pretrained(args.model, fast=fast)
    except (OSError, ValueError) as err:
        # One line at startup, not a traceback: a ModelLoadError already names the model.
        message = (
            str(err) if isinstance(err, ModelLoadError) else f"cannot load the model {args.model!r}: {err}"
        )
        sys.exit(" ".join(line.strip() for line in message.splitlines() if line.strip()))
    demo = build_demo(classifier, args.model)
    demo.queue(max_size=20).launch(max_file_size=f"{MAX_FILE_SIZE_MB}mb")


if __name__ == "__main__":
    main()
