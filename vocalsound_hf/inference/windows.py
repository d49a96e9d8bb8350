"""What sliding-window classification gives: a ``Window`` per analysis window and a ``Prediction`` per
recording, and when a window counts as silent."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# A window (or a whole recording) whose RMS level is below this is silence: the six classes have no
# "background" class, so silence is reported as such instead of being forced into one of them.
SILENCE_DBFS = -60.0
# Windows per forward pass; bounds memory on long recordings.
WINDOW_BATCH_SIZE = 8


def rms_dbfs(waveform: torch.Tensor) -> torch.Tensor:
    """RMS level in dB relative to full scale over the last dimension (``-inf`` for digital silence)."""
    return 10 * torch.log10(waveform.square().mean(dim=-1))


@dataclass(frozen=True)
class Window:
    """One analysis window of a recording; ``probabilities`` is ``None`` for a silent window."""

    start_s: float
    end_s: float
    probabilities: dict[str, float] | None

    @property
    def label(self) -> str | None:
        """The top class, or ``None`` when the window is silent."""
        return None if self.probabilities is None else max(self.probabilities, key=self.probabilities.get)


@dataclass(frozen=True)
class Prediction:
    """The classification of one recording: overall class probabilities and the windows behind them."""

    probabilities: dict[str, float]
    duration_s: float
    windows: tuple[Window, ...]

    @property
    def label(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` most probable classes with their probabilities, best first."""
        return sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)[:k]

    def to_dict(self, top_k: int | None = None) -> dict:
        """A JSON-ready dict: ``predictions`` in the transformers pipeline format, plus the windows."""
        top = self.top(len(self.probabilities) if top_k is None else top_k)
        return {
            "duration_s": round(self.duration_s, 3),
            "predictions": [{"score": score, "label": label} for label, score in top],
            "windows": [
                {
                    "start_s": round(w.start_s, 3),
                    "end_s": round(w.end_s, 3),
                    "label": w.label,
                    "score": None if w.probabilities is None else w.probabilities[w.label],
                }
                for w in self.windows
            ],
        }
