"""``AudioClassifier``: a saved ``ASTForAudioClassification`` with its feature settings, for clips and long
recordings.

Clips up to the model's window are classified in one pass; longer recordings are classified as sliding
windows, giving a timeline (``Window``) and an overall label (``Prediction``). Silent windows are skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import ASTFeatureExtractor, ASTForAudioClassification, AutoConfig

from ..audio import MAX_DURATION_S, AudioInputError, check_finite, load_audio
from ..features import batch_fbank, frame_span
from ..models.build import is_audioset_head, zero_shot_vocalsound
from ..models.checkpoints import first_line, hub_failure, missing_location
from ..models.presets import AST_MODEL_TYPE
from .detection import Detection, DetectionThresholds, detect_events
from .fast import fast_layers
from .windows import SILENCE_DBFS, WINDOW_BATCH_SIZE, Prediction, Window, rms_dbfs

logger = logging.getLogger(__name__)

# What a saved model directory holds (``save_model_dir``, a Trainer with its feature extractor, the Hub's).
MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
# What transformers raises for the files of a directory it cannot use (a corrupt weight file raises
# safetensors' own error, a malformed preprocessor config a TypeError, weights of another shape RuntimeError).
_LOAD_ERRORS = (OSError, ValueError, TypeError, RuntimeError, SafetensorError)


class ModelLoadError(OSError):
    """A model directory or Hub id that cannot be loaded; the message names it and says why, in one line."""

    def __init__(self, name_or_path: str | Path, reason: str):
        super().__init__(f"cannot load the model {str(name_or_path)!r}: {reason}")


def _non_finite_scores(name: str, waveform: torch.Tensor) -> str:
    """Why finite samples gave NaN scores: samples so far beyond full scale that the power overflows float32."""
    # From about 1e18 on, squared samples overflow in the fbank and the RMS; the model itself is the other
    # cause, with normal input.
    peak = waveform.abs().max().item()
    if peak > 1:
        return (
            f"{name}: the samples reach {peak:.3g} (full scale is 1), too loud to compute features; "
            "the scores are not finite numbers"
        )
    return f"{name}: the model gave scores that are not finite numbers (are its weights broken?)"


def _load_model_dir(name: str) -> tuple[ASTForAudioClassification, ASTFeatureExtractor]:
    """The model and feature extractor of a local directory or Hub id, or ``ModelLoadError`` saying why not."""
    local = Path(name)
    problem = missing_location(name)
    if problem is not None:
        raise ModelLoadError(name, problem)
    if local.is_file():
        hint = (
            " (vocalsound-hf convert-checkpoint converts an original AST .pth)"
            if local.suffix == ".pth"
            else ""
        )
        raise ModelLoadError(name, f"it is a file, expected a model directory or Hub id{hint}")
    if local.is_dir():
        missing = [
            file
            for file in MODEL_FILES
            if not (local / file).is_file()
            and not (file == "model.safetensors" and (local / f"{file}.index.json").is_file())
        ]
        if missing:
            raise ModelLoadError(name, f"the directory is not a saved model: it has no {', '.join(missing)}")
    try:
        config = AutoConfig.from_pretrained(name)
        if config.model_type != AST_MODEL_TYPE:
            raise ModelLoadError(name, f"it holds a {config.model_type!r} model, expected {AST_MODEL_TYPE!r}")
        model = ASTForAudioClassification.from_pretrained(name, config=config, use_safetensors=True)
        feature_extractor = ASTFeatureExtractor.from_pretrained(name)
    except ModelLoadError:
        raise
    except _LOAD_ERRORS as err:
        reason = hub_failure(err) if not local.exists() else first_line(err)
        raise ModelLoadError(name, reason) from err
    return model, feature_extractor


class AudioClassifier:
    """An AST audio classifier with its feature settings, for clips and long recordings.

    Build it with ``AudioClassifier.from_pretrained(model_dir_or_hub_id, fast=...)``.
    """

    def __init__(self, model, feature_extractor, *, fast: bool = False):
        config = model.config
        if feature_extractor.max_length != config.max_length:
            raise ValueError(
                f"the feature extractor makes {feature_extractor.max_length} frames but the model expects "
                f"{config.max_length}"
            )
        self.model = model.eval()
        self.fast = fast
        self.sampling_rate = int(feature_extractor.sampling_rate)
        self.num_mel_bins = int(feature_extractor.num_mel_bins)
        self.max_length = int(config.max_length)
        self.mean = float(feature_extractor.mean)
        self.std = float(feature_extractor.std)
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        # Same rule as transformers' audio-classification pipeline: sigmoid for multi-label heads.
        self._multi_label = config.problem_type == "multi_label_classification"
        # Samples that give exactly ``max_length`` fbank frames.
        self.window_samples = frame_span(self.max_length)
        # Whether the head is the VocalSound rows of an AudioSet head, never trained on VocalSound.
        self.zero_shot = False
        # How ``detect`` turns windows into events; ``from_pretrained`` reads a model's own detection.json.
        self.detection_thresholds = DetectionThresholds()

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, fast: bool = False, device: str | torch.device | None = None
    ) -> AudioClassifier:
        """Load a model directory or Hub id (safetensors weights only).

        Raises ``ModelLoadError`` (an ``OSError``) naming the model when there is no such directory (and, for
        a name that may be a Hub id, the Hub cannot give it), when the directory is not a saved AST model, or
        when its files cannot be loaded.

        ``fast`` gives the fast CPU path (int8 linear layers, bf16 attention; see ``fast.fast_layers``); it
        needs ``device`` to be the CPU. ``device`` defaults to CUDA when available, otherwise the CPU.
        """
        if device is None:
            device = "cpu" if fast or not torch.cuda.is_available() else "cuda"
        device = torch.device(device)
        if fast and device.type != "cpu":
            raise ValueError(f"the fast path (int8 and bf16 CPU kernels) runs on the CPU, not {device}")
        started = time.perf_counter()
        model, feature_extractor = _load_model_dir(str(name_or_path))
        # An AudioSet AST (such as models.presets.AUDIOSET_AST) classifies the six classes zero-shot.
        zero_shot = is_audioset_head(model.config)
        if zero_shot:
            model = zero_shot_vocalsound(model)
        model = model.to(device)
        if fast:
            model = fast_layers(model.eval())
        try:
            classifier = cls(model, feature_extractor, fast=fast)
            classifier.zero_shot = zero_shot
            if Path(name_or_path).is_dir():
                classifier.detection_thresholds = DetectionThresholds.for_model(name_or_path)
        except ValueError as err:
            raise ModelLoadError(name_or_path, str(err)) from err
        logger.info(
            "loaded %s: %d labels%s, %d-frame window, %s on %s in %.1f s",
            name_or_path,
            len(classifier.labels),
            " (zero-shot: the VocalSound rows of its AudioSet head)" if zero_shot else "",
            classifier.max_length,
            "int8 fast path" if fast else "fp32",
            device,
            time.perf_counter() - started,
        )
        return classifier

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters(), torch.empty(0)).device

    @property
    def window_s(self) -> float:
        """Length of the model's window in seconds."""
        return self.window_samples / self.sampling_rate

    def log_mel(
        self,
        waveforms: Sequence[torch.Tensor] | torch.Tensor,
        lengths: torch.Tensor | None = None,
        max_length: int | None = None,
    ) -> torch.Tensor:
        """Normalised log-mel fbank as the model sees it, ``[batch, max_length, mel]``, on the model's device.

        ``waveforms`` is a list of 1-D waveforms or a padded ``[batch, samples]`` tensor with ``lengths``, at
        the classifier's rate. ``max_length`` defaults to the model's window: shorter inputs are padded and
        longer ones cut, as in training.
        """
        if isinstance(waveforms, torch.Tensor):
            waveforms = waveforms.to(self.device)
        else:
            waveforms = [w.to(self.device) for w in waveforms]
        return batch_fbank(
            waveforms,
            sampling_rate=self.sampling_rate,
            num_mel_bins=self.num_mel_bins,
            max_length=max_length or self.max_length,
            mean=self.mean,
            std=self.std,
            lengths=lengths,
        )

    @torch.inference_mode()
    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[batch, labels]`` of ``[batch, frames, mel]`` features, in chunks.

        The model runs on its own device; the probabilities come back on the features' device, so that the
        fast path (CPU only) and a GPU model can be compared on the same features.
        """
        chunks = []
        for chunk in features.split(WINDOW_BATCH_SIZE):
            logits = self.model(input_values=chunk.to(self.device)).logits.float()
            chunks.append(logits.sigmoid() if self._multi_label else logits.softmax(dim=-1))
        return torch.cat(chunks).to(features.device)

    def window_starts(self, num_samples: int, hop_s: float | None = None) -> list[int]:
        """Start samples of the sliding windows over a recording of ``num_samples`` samples.

        Windows hop by ``hop_s`` (default: half a window); the last one is aligned to the end of the
        recording so that every sample is covered by a full window.
        """
        if num_samples <= self.window_samples:
            return [0]
        hop = round((hop_s if hop_s is not None else self.window_s / 2) * self.sampling_rate)
        if hop <= 0:
            raise ValueError(f"the window hop must be positive, got {hop_s} s")
        last = num_samples - self.window_samples
        starts = list(range(0, last, hop))
        return [*starts, last]

    def classify(
        self,
        audio: str | Path | torch.Tensor,
        *,
        name: str | None = None,
        hop_s: float | None = None,
        max_duration_s: float = MAX_DURATION_S,
    ) -> Prediction:
        """Classify a file or a mono waveform at the classifier's rate (``name`` labels it in messages).

        A recording longer than the model's window is classified as sliding windows (``hop_s`` apart);
        silent windows (below ``SILENCE_DBFS``) are not classified, and the overall probabilities are the
        mean of the others weighted by their energy, since the vocal sound is the loud part of a
        recording. Raises ``AudioInputError`` for unusable input (a silent recording, a NaN or infinite sample)
        and for scores that are not finite numbers, so a ``Prediction`` only ever holds finite numbers.
        """
        started = time.perf_counter()
        if isinstance(audio, torch.Tensor):
            waveform, name = audio.float(), name or "waveform"
            # load_audio checks files; a tensor from the API is checked here, before the silence check (a NaN
            # sample makes the RMS NaN, which compares false and was reported as silence).
            check_finite(waveform, self.sampling_rate, name)
        else:
            waveform = load_audio(audio, sampling_rate=self.sampling_rate, max_duration_s=max_duration_s)
            name = name or Path(audio).name
        if waveform.ndim != 1:
            raise ValueError(f"expected a mono waveform [samples], got shape {tuple(waveform.shape)}")
        num_samples = waveform.numel()
        starts = self.window_starts(num_samples, hop_s)
        ends = [min(start + self.window_samples, num_samples) for start in starts]
        # Window views of the waveform, zero-padded when the recording is shorter than one window.
        windows = torch.nn.functional.pad(waveform, (0, max(0, self.window_samples - num_samples)))
        windows = windows.unfold(0, self.window_samples, 1)[starts] if len(starts) > 1 else windows[None]
        lengths = torch.tensor([end - start for start, end in zip(starts, ends)])
        levels = rms_dbfs(torch.stack([w[:n] for w, n in zip(windows, lengths.tolist())]))
        active = levels >= SILENCE_DBFS
        if not active.any():
            raise AudioInputError(
                f"{name}: the recording is silent (below {SILENCE_DBFS:g} dBFS); there is nothing to classify"
            )
        probs = self.probabilities(self.log_mel(windows[active], lengths[active])).cpu()
        energy = 10 ** (levels[active] / 10)
        overall = (probs * energy[:, None]).sum(0) / energy.sum()
        if not (probs.isfinite().all() and overall.isfinite().all()):
            raise AudioInputError(_non_finite_scores(name, waveform))
        window_probs = iter(probs.tolist())
        timeline = tuple(
            Window(
                start / self.sampling_rate,
                end / self.sampling_rate,
                dict(zip(self.labels, next(window_probs))) if is_active else None,
            )
            for start, end, is_active in zip(starts, ends, active.tolist())
        )
        prediction = Prediction(
            dict(zip(self.labels, overall.tolist())), num_samples / self.sampling_rate, timeline
        )
        logger.info(
            "%s: %.2f s, %d window(s), %d silent -> %s %.3f in %.0f ms",
            name,
            prediction.duration_s,
            len(timeline),
            len(timeline) - int(active.sum()),
            prediction.label,
            prediction.probabilities[prediction.label],
            1000 * (time.perf_counter() - started),
        )
        return prediction

    def detect(
        self,
        audio: str | Path | torch.Tensor,
        *,
        thresholds: DetectionThresholds | None = None,
        hop_s: float | None = None,
        name: str | None = None,
        max_duration_s: float | None = None,
    ) -> Detection:
        """Sound events of a file or a mono waveform at the classifier's rate: class, onset, offset, confidence.

        Files are decoded chunk by chunk, so an hour of audio takes no more memory than a minute (see
        ``detection``). ``thresholds`` default to ``self.detection_thresholds`` (a model directory's
        ``detection.json``, else the documented defaults); ``hop_s`` to an eighth of the window.
        """
        return detect_events(
            self, audio, thresholds=thresholds, hop_s=hop_s, name=name, max_duration_s=max_duration_s
        )
