"""VocalSound Space: recognise laughter, sighs, coughs, throat clearing, sneezes and sniffs with AST.

Run ``python app.py [MODEL]``; MODEL (or the ``VOCALSOUND_MODEL`` environment variable) is a model directory
or a Hub id. ``VOCALSOUND_FAST=0`` switches from the fast CPU path (int8, bf16) to the fp32 model. The port
comes from ``GRADIO_SERVER_PORT`` (default: the first free one from 7860). Everything but the page itself
lives in the library: decoding in ``vocalsound_hf.audio``, the classifier in ``vocalsound_hf.inference``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

# No usage analytics leave a local run (Spaces set their own environment).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vocalsound_hf.audio import AudioInputError, load_audio  # noqa: E402
from vocalsound_hf.features import FRAME_SHIFT, num_frames  # noqa: E402
from vocalsound_hf.inference.classifier import AudioClassifier, ModelLoadError, Prediction  # noqa: E402
from vocalsound_hf.release import TARGET_SAMPLING_RATE  # noqa: E402

logger = logging.getLogger("vocalsound_demo")

# Placeholder until the fine-tuned model is published on the Hub; override with VOCALSOUND_MODEL or argv.
DEFAULT_MODEL = "vocalsound-hf/ast-vocalsound"
# Limits of what the free CPU tier can classify in reasonable time; both are stated on the page.
MAX_DURATION_S = 120.0
MAX_FILE_SIZE_MB = 50
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
TABLE_HEADERS = ["start (s)", "end (s)", "top class", "probability"]


def spectrogram_figure(features: torch.Tensor, clip_frames: int) -> Figure:
    """The normalised log-mel the model sees (``[frames, mel]``), time on x; padding past the clip is marked."""
    seconds_per_frame = FRAME_SHIFT / TARGET_SAMPLING_RATE
    figure = Figure(figsize=(9, 2.8), layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(
        features.T.cpu().numpy(),
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0, features.shape[0] * seconds_per_frame, 0, features.shape[1]),
        interpolation="nearest",
    )
    if clip_frames < features.shape[0]:
        ax.axvline(clip_frames * seconds_per_frame, color="white", linestyle="--", linewidth=1)
        ax.text(
            clip_frames * seconds_per_frame, features.shape[1] * 0.92, " padding", color="white", fontsize=8
        )
    ax.set(xlabel="time (s)", ylabel="mel band", title="Normalised log-mel fbank (model input)")
    figure.colorbar(image, ax=ax, pad=0.01)
    return figure


def timeline_figure(prediction: Prediction, labels: list[str]) -> Figure:
    """Top class of every sliding window over time; silent windows get their own row."""
    rows = [*labels, "(silent)"]
    figure = Figure(figsize=(9, 2.6), layout="constrained")
    ax = figure.add_subplot()
    for window in prediction.windows:
        row = rows.index(window.label) if window.label is not None else len(labels)
        confidence = 1.0 if window.label is None else window.probabilities[window.label]
        colour = "lightgrey" if window.label is None else f"C{row}"
        ax.broken_barh(
            [(window.start_s, window.end_s - window.start_s)],
            (row - 0.4, 0.8),
            color=colour,
            alpha=0.25 + 0.5 * confidence,
        )
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlim=(0, prediction.duration_s), xlabel="time (s)", title="Top class per window")
    ax.grid(axis="x", alpha=0.3)
    return figure


def build_demo(classifier: AudioClassifier) -> gr.Blocks:
    """The page: audio in; label, spectrogram, timing and (for long recordings) a window timeline out."""
    window_s = classifier.window_s
    path_name = "fast CPU path (int8, bf16)" if classifier.fast else "fp32"

    def classify(audio_path: str | None):
        if audio_path is None:
            raise gr.Error(
                "Upload an audio file or record one with the microphone first.", print_exception=False
            )
        started = time.perf_counter()
        try:
            waveform = load_audio(
                audio_path, sampling_rate=classifier.sampling_rate, max_duration_s=MAX_DURATION_S
            )
            prediction = classifier.classify(waveform, name=Path(audio_path).name)
        except AudioInputError as err:
            # The temporary upload name means nothing to the user; the reason after it does.
            message = str(err).removeprefix(f"{Path(audio_path).name}: ")
            logger.warning("rejected %s: %s", Path(audio_path).name, message)
            raise gr.Error(f"Cannot classify this audio: {message}.", print_exception=False) from None
        elapsed_ms = 1000 * (time.perf_counter() - started)
        clip_frames = num_frames(waveform.numel())
        features = classifier.log_mel([waveform], max_length=max(classifier.max_length, clip_frames))[0]
        windows = prediction.windows
        silent = sum(window.label is None for window in windows)
        info = (
            f"**Duration** {prediction.duration_s:.2f} s · **prediction took** {elapsed_ms:.0f} ms ({path_name}) · "
            + (
                f"{len(windows)} windows of {window_s:.2f} s, {silent} silent; the overall label is the "
                "energy-weighted mean of the non-silent windows"
                if len(windows) > 1
                else "one window"
            )
        )
        table = [
            [
                round(w.start_s, 2),
                round(w.end_s, 2),
                w.label or "(silent)",
                None if w.label is None else round(w.probabilities[w.label], 3),
            ]
            for w in windows
        ]
        timeline = gr.Plot(timeline_figure(prediction, classifier.labels), visible=len(windows) > 1)
        return prediction.probabilities, spectrogram_figure(features, clip_frames), info, timeline, table

    def classify_or_clear(audio_path: str | None):
        # Clearing the input clears the outputs instead of reporting an error.
        if audio_path is None:
            return None, None, "", gr.Plot(None, visible=False), []
        return classify(audio_path)

    with gr.Blocks(title="VocalSound: AST vocal sound classifier") as demo:
        gr.Markdown(
            "# VocalSound vocal sound classifier\n"
            "An Audio Spectrogram Transformer fine-tuned on [VocalSound](https://github.com/YuanGongND/vocalsound) "
            "tells apart **laughter, sighs, coughs, throat clearing, sneezes and sniffs**. Upload a file (wav, "
            f"flac, mp3, ogg; any sample rate and channel count) or record one. Limits: **{MAX_FILE_SIZE_MB} MB** "
            f"per upload and **{MAX_DURATION_S / 60:g} minutes** of audio. Recordings longer than the model's "
            f"{window_s:.2f} s window are classified in overlapping windows, shown as a timeline."
        )
        with gr.Row():
            with gr.Column(scale=1):
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio")
                button = gr.Button("Classify", variant="primary")
                gr.Examples(
                    examples=[[str(path)] for path in sorted(EXAMPLES_DIR.glob("*.wav"))],
                    inputs=audio,
                    label="Example clips (synthetic)",
                )
            with gr.Column(scale=1):
                label = gr.Label(num_top_classes=len(classifier.labels), label="Class probabilities")
                info = gr.Markdown()
        spectrogram = gr.Plot(label="Log-mel spectrogram the model sees")
        timeline = gr.Plot(label="Timeline", visible=False)
        table = gr.Dataframe(headers=TABLE_HEADERS, label="Windows", interactive=False)
        outputs = [label, spectrogram, info, timeline, table]
        # One inference at a time on the Space's two vCPUs, whichever event asks for it.
        button.click(classify, audio, outputs, api_name="classify", concurrency_id="model")
        audio.change(classify_or_clear, audio, outputs, api_visibility="private", concurrency_id="model")
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "model",
        nargs="?",
        default=os.environ.get("VOCALSOUND_MODEL", DEFAULT_MODEL),
        help=f"model directory or Hub id (default: $VOCALSOUND_MODEL or {DEFAULT_MODEL})",
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
    demo = build_demo(classifier)
    demo.queue(max_size=20).launch(max_file_size=f"{MAX_FILE_SIZE_MB}mb")


if __name__ == "__main__":
    main()
