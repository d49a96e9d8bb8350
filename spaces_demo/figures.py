"""The Space's drawings: the spectrogram the model sees and the events of a recording, one row per class."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

from vocalsound_hf.events import Event
from vocalsound_hf.features import FRAME_SHIFT
from vocalsound_hf.release import TARGET_SAMPLING_RATE


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


def events_figure(
    events: Sequence[Event], labels: Sequence[str], start_s: float, end_s: float, title: str = "Events"
) -> Figure:
    """One bar per event (merged windows) on its class's row between ``start_s`` and ``end_s``; the more
    confident the event, the darker its bar."""
    figure = Figure(figsize=(9, 2.6), layout="constrained")
    ax = figure.add_subplot()
    rows = list(labels)
    for event in events:
        row = rows.index(event.label) if event.label in rows else None
        if row is None:
            continue
        confidence = 1.0 if event.confidence is None else event.confidence
        ax.broken_barh(
            [(event.onset_s, event.duration_s)],
            (row - 0.4, 0.8),
            color=f"C{row}",
            alpha=0.3 + 0.7 * confidence,
        )
    if not events:
        ax.text(0.5, 0.5, "no events", transform=ax.transAxes, ha="center", va="center", color="grey")
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlim=(start_s, max(end_s, start_s + 1e-3)), ylim=(-0.6, len(rows) - 0.4), xlabel="time (s)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return figure
