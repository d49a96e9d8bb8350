"""The Space's Upload tab: a recording in; its label, spectrogram, windows and events (with downloads) out."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import gradio as gr
from figures import events_figure, spectrogram_figure

from vocalsound_hf.audio import AudioInputError, load_audio
from vocalsound_hf.events import EVENT_COLUMNS, Event, events_to_audacity, events_to_csv, write_events
from vocalsound_hf.features import num_frames
from vocalsound_hf.inference.classifier import AudioClassifier
from vocalsound_hf.inference.detection import Detection
from vocalsound_hf.inference.windows import Prediction

logger = logging.getLogger("vocalsound_demo")

# Limits of what the free CPU tier can classify in reasonable time; both are stated on the page.
MAX_DURATION_S = 120.0
MAX_FILE_SIZE_MB = 50
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
TABLE_HEADERS = ["start (s)", "end (s)", "top class", "probability"]
# The events table has the columns of the CSV download, less the file (there is one recording).
EVENT_HEADERS = [column for column in EVENT_COLUMNS if column != "file"]
COUNT_HEADERS = ["class", "events", "per minute"]
# Export folders of the latest requests kept on disk; Gradio copies each file to its own cache as it
# answers, so older folders are deleted and a long-running Space does not fill its disk.
KEEP_EXPORTS = 8


class ExportFolder:
    """Per-request folders under one temporary directory, the oldest deleted past ``keep``."""

    def __init__(self, keep: int = KEEP_EXPORTS):
        self.root = Path(tempfile.mkdtemp(prefix="vocalsound_events_"))
        self._recent: deque[Path] = deque()
        self._keep = keep
        self._lock = threading.Lock()

    def new(self) -> Path:
        with self._lock:
            folder = Path(tempfile.mkdtemp(dir=self.root))
            self._recent.append(folder)
            while len(self._recent) > self._keep:
                shutil.rmtree(self._recent.popleft(), ignore_errors=True)
        return folder


def event_rows(events: Sequence[Event]) -> list[list]:
    """Table rows in ``EVENT_HEADERS`` order, rounded as in the CSV."""
    return [[event.to_dict()[column] for column in EVENT_HEADERS] for event in events]


def count_rows(counts: dict[str, int], rates: dict[str, float]) -> list[list]:
    return [[label, count, round(rates[label], 2)] for label, count in counts.items()]


def recording_events(classifier: AudioClassifier, waveform, prediction: Prediction, name: str) -> Detection:
    """The events of a decoded recording: ``classifier.detect`` when it is longer than one window; a clip of
    one window is one event, its label over its whole length."""
    if len(prediction.windows) > 1:
        return classifier.detect(waveform, name=name)
    event = Event(prediction.label, 0.0, prediction.duration_s, prediction.probabilities[prediction.label])
    return Detection(
        (event,),
        prediction.duration_s,
        tuple(classifier.labels),
        classifier.detection_thresholds,
        classifier.window_s,
    )


def write_exports(folder: Path, name: str, events: Sequence[Event]) -> tuple[Path, Path]:
    """The CSV (``events_to_csv``) and Audacity label track (``events_to_audacity``) of one recording."""
    stem = Path(name).stem or "recording"
    csv_path = write_events(folder / f"{stem}_events.csv", events_to_csv({name: events}))
    labels_path = write_events(folder / f"{stem}_labels.txt", events_to_audacity(events))
    return csv_path, labels_path


def _summary(prediction: Prediction, detection: Detection, elapsed_ms: float, path_name: str, window_s):
    windows = prediction.windows
    silent = sum(window.label is None for window in windows)
    counted = ", ".join(f"{count} {label}" for label, count in detection.counts().items() if count)
    return (
        f"**Duration** {prediction.duration_s:.2f} s · **prediction took** {elapsed_ms:.0f} ms ({path_name}) · "
        + (
            f"{len(windows)} windows of {window_s:.2f} s, {silent} silent; the overall label is the "
            "energy-weighted mean of the non-silent windows"
            if len(windows) > 1
            else "one window"
        )
        + f"\n\n**Events** {len(detection.events)}"
        + (f" ({counted})" if counted else "")
    )


def make_classify(classifier: AudioClassifier, exports: ExportFolder) -> Callable:
    """The Upload tab's handler: an audio path in, the tab's outputs (``OUTPUT_NAMES`` order) out."""
    path_name = "fast CPU path (int8, bf16)" if classifier.fast else "fp32"

    def classify(audio_path: str | None):
        if audio_path is None:
            raise gr.Error(
                "Upload an audio file or record one with the microphone first.", print_exception=False
            )
        name = Path(audio_path).name
        started = time.perf_counter()
        try:
            waveform = load_audio(
                audio_path, sampling_rate=classifier.sampling_rate, max_duration_s=MAX_DURATION_S
            )
            prediction = classifier.classify(waveform, name=name)
            elapsed_ms = 1000 * (time.perf_counter() - started)
            detection = recording_events(classifier, waveform, prediction, name)
        except AudioInputError as err:
            # The temporary upload name means nothing to the user; the reason after it does.
            message = str(err).removeprefix(f"{name}: ")
            logger.warning("rejected %s: %s", name, message)
            raise gr.Error(f"Cannot classify this audio: {message}.", print_exception=False) from None
        clip_frames = num_frames(waveform.numel())
        features = classifier.log_mel([waveform], max_length=max(classifier.max_length, clip_frames))[0]
        windows = prediction.windows
        table = [
            [
                round(w.start_s, 2),
                round(w.end_s, 2),
                w.label or "(silent)",
                None if w.label is None else round(w.probabilities[w.label], 3),
            ]
            for w in windows
        ]
        figure = events_figure(detection.events, classifier.labels, 0.0, detection.duration_s)
        csv_path, labels_path = write_exports(exports.new(), name, detection.events)
        return (
            prediction.probabilities,
            spectrogram_figure(features, clip_frames),
            _summary(prediction, detection, elapsed_ms, path_name, classifier.window_s),
            gr.Plot(figure, visible=len(windows) > 1),
            table,
            event_rows(detection.events),
            count_rows(detection.counts(), detection.rate_per_minute()),
            gr.DownloadButton(value=str(csv_path), visible=True),
            gr.DownloadButton(value=str(labels_path), visible=True),
        )

    return classify


def build_upload_tab(classifier: AudioClassifier) -> None:
    """The Upload tab's components and events, inside the page's ``gr.Blocks``."""
    classify = make_classify(classifier, ExportFolder())

    def classify_or_clear(audio_path: str | None):
        # Clearing the input clears the outputs instead of reporting an error.
        if audio_path is None:
            hidden = gr.DownloadButton(value=None, visible=False)
            return None, None, "", gr.Plot(None, visible=False), [], [], [], hidden, hidden
        return classify(audio_path)

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
            # A zero-shot AudioSet head scores each class on its own (sigmoids), it does not share out 1.
            scores = "Class scores (sigmoid, zero-shot)" if classifier.zero_shot else "Class probabilities"
            label = gr.Label(num_top_classes=len(classifier.labels), label=scores)
            info = gr.Markdown()
    spectrogram = gr.Plot(label="Log-mel spectrogram the model sees")
    timeline = gr.Plot(label="Events over time (merged windows, one row per class)", visible=False)
    with gr.Row():
        events = gr.Dataframe(headers=EVENT_HEADERS, label="Events", interactive=False, scale=2)
        counts = gr.Dataframe(headers=COUNT_HEADERS, label="Events per class", interactive=False, scale=1)
    with gr.Row():
        csv_file = gr.DownloadButton("Download events (CSV)", visible=False)
        labels_file = gr.DownloadButton("Download Audacity labels", visible=False)
    table = gr.Dataframe(headers=TABLE_HEADERS, label="Windows", interactive=False)
    outputs = [label, spectrogram, info, timeline, table, events, counts, csv_file, labels_file]
    # One inference at a time on the Space's two vCPUs, whichever event asks for it.
    button.click(classify, audio, outputs, api_name="classify", concurrency_id="model")
    audio.change(classify_or_clear, audio, outputs, api_visibility="private", concurrency_id="model")
