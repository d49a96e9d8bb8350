"""Inference for VocalSound models, shared by the CLI (``vocalsound-hf predict``) and the Space.

``load_audio`` decodes any file FFmpeg reads (wav, flac, mp3, ogg, ...) to 16 kHz mono and turns bad input
into an ``AudioInputError`` whose message is fit to show a user. ``AudioClassifier`` wraps a saved
``ASTForAudioClassification`` and its feature extractor config: clips up to the model's window are
classified in one pass; longer recordings are classified as sliding windows, giving a timeline and an
overall label.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .features import FRAME_LENGTH, FRAME_SHIFT, batch_fbank
from .release import TARGET_SAMPLING_RATE

logger = logging.getLogger(__name__)

# Longest recording accepted by default (the Space sets its own, shorter limit).
MAX_DURATION_S = 600.0
# Shortest clip worth classifying: a few fbank frames.
MIN_DURATION_S = 0.1
# A window (or a whole recording) whose RMS level is below this is silence: the six classes have no
# "background" class, so silence is reported as such instead of being forced into one of them.
SILENCE_DBFS = -60.0
# A file that decodes to less than this fraction of the duration its header states was cut short.
TRUNCATED_RATIO = 0.9
# Windows per forward pass; bounds memory on long recordings.
WINDOW_BATCH_SIZE = 8


class AudioInputError(ValueError):
    """Audio that cannot be classified; the message says why and is meant for the user."""


def load_audio(
    path: str | Path, *, sampling_rate: int = TARGET_SAMPLING_RATE, max_duration_s: float = MAX_DURATION_S
) -> torch.Tensor:
    """Decode an audio file to a mono float32 waveform at ``sampling_rate``.

    Any format and channel count FFmpeg decodes (through torchcodec) is accepted; channels are averaged
    and the rate is converted with ``torchaudio.functional.resample``. Raises ``FileNotFoundError`` for a
    missing file and ``AudioInputError`` for an empty, non-audio, truncated, too short or too long one.
    """
    from torchaudio.functional import resample

    path = Path(path)
    name = path.name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioInputError(f"{name}: the file is empty")
    decoder = _open_decoder(path)
    header_s = decoder.metadata.duration_seconds_from_header
    # Refuse an hour-long file from its header, before decoding it.
    if header_s is not None and header_s > max_duration_s:
        raise AudioInputError(_too_long(name, header_s, max_duration_s))
    try:
        samples = decoder.get_all_samples()
    except RuntimeError:
        raise AudioInputError(
            f"{name}: no audio could be decoded (the file is truncated, corrupt or empty)"
        ) from None
    waveform = samples.data.mean(dim=0)
    duration_s = waveform.numel() / samples.sample_rate
    if header_s is not None and duration_s < TRUNCATED_RATIO * header_s:
        raise AudioInputError(
            f"{name}: the file is truncated (its header says {header_s:.2f} s, only {duration_s:.2f} s decode)"
        )
    if duration_s > max_duration_s:
        raise AudioInputError(_too_long(name, duration_s, max_duration_s))
    if duration_s < MIN_DURATION_S:
        raise AudioInputError(
            f"{name}: {duration_s:.3f} s is too short (at least {MIN_DURATION_S} s is needed)"
        )
    if samples.sample_rate != sampling_rate:
        waveform = resample(waveform, samples.sample_rate, sampling_rate)
    return waveform.float()


def _open_decoder(path: Path):
    """torchcodec's WAV decoder for PCM and float WAV files, its FFmpeg decoder for everything else."""
    from torchcodec.decoders import AudioDecoder, WavDecoder

    # FFmpeg estimates a WAV's duration from the file size and decodes whatever is there, so a WAV cut short
    # would pass unnoticed; WavDecoder reads the header's data size and fails on the missing bytes.
    try:
        return WavDecoder(str(path))
    except RuntimeError:
        pass
    try:
        return AudioDecoder(str(path))
    except (RuntimeError, ValueError):
        raise AudioInputError(f"{path.name}: not a readable audio file (wav, flac, mp3, ogg, ...)") from None


def _too_long(name: str, duration_s: float, max_duration_s: float) -> str:
    return f"{name}: {duration_s / 60:.1f} min is longer than the limit of {max_duration_s / 60:g} min"


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
        self.window_samples = FRAME_LENGTH + FRAME_SHIFT * (self.max_length - 1)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, fast: bool = False, device: str | torch.device | None = None
    ) -> AudioClassifier:
        """Load a model directory or Hub id (safetensors weights only).

        ``fast`` gives the fast CPU path (int8 linear layers, bf16 attention; see ``_fast_layers``); it needs
        ``device`` to be the CPU. ``device`` defaults to CUDA when available, otherwise the CPU.
        """
        from transformers import ASTFeatureExtractor, ASTForAudioClassification

        if device is None:
            device = "cpu" if fast or not torch.cuda.is_available() else "cuda"
        device = torch.device(device)
        if fast and device.type != "cpu":
            raise ValueError(f"the fast path (int8 and bf16 CPU kernels) runs on the CPU, not {device}")
        started = time.perf_counter()
        model = ASTForAudioClassification.from_pretrained(str(name_or_path), use_safetensors=True).to(device)
        feature_extractor = ASTFeatureExtractor.from_pretrained(str(name_or_path))
        if fast:
            model = _fast_layers(model.eval())
        classifier = cls(model, feature_extractor, fast=fast)
        logger.info(
            "loaded %s: %d labels, %d-frame window, %s on %s in %.1f s",
            name_or_path,
            len(classifier.labels),
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
        recording. Raises ``AudioInputError`` for unusable input, a silent recording included.
        """
        started = time.perf_counter()
        if isinstance(audio, torch.Tensor):
            waveform, name = audio.float(), name or "waveform"
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


# AST's classifier reads the last layer's [CLS] and distillation tokens only (``pooler_output``).
POOLED_TOKENS = 2


class _Int8Linear(torch.nn.Module):
    """``nn.Linear`` with int8 weights (one scale per output channel) and int8 activations quantised on every
    call, one scale per clip, through PyTorch's dynamic int8 kernels.

    Built here rather than by ``torch.ao``'s ``quantize_dynamic`` for three settings it does not expose:
    - oneDNN kernels: they allocate no fresh pages per call, where fbgemm's fault in ~26 MB per forward pass
      of AST base; measured ~10 % faster here.
    - All 8 activation bits where the CPU has VNNI: ``quantize_dynamic``'s modules always use 7
      (``reduce_range``), which keeps pre-VNNI kernels from overflowing their 16-bit pair sums; VNNI sums in
      32 bits. The extra bit halves the activations' rounding error
      (``test_int8_linear_uses_every_activation_bit_the_cpu_allows``).
    - One activation scale per clip rather than per batch, so that a clip's logits do not depend on the clips
      batched with it.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        weight = weight.detach().float()
        # Symmetric per-channel scales, as torch.ao's per-channel weight observer sets them.
        scale = (weight.abs().amax(dim=1) / 127.5).clamp_min(torch.finfo(torch.float32).eps)
        engine = torch.backends.quantized.engine
        with warnings.catch_warnings():
            # Quantized tensors are deprecated in favour of torchao, which this project does not depend on;
            # they still work in the pinned torch, so the warning is only noise for users.
            warnings.filterwarnings("ignore", message=r".*quantize_per_tensor")
            qweight = torch.quantize_per_channel(
                weight, scale, torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8
            )
            # The packed weights carry their engine's kernels; the global setting is restored at once.
            if "onednn" in torch.backends.quantized.supported_engines:
                torch.backends.quantized.engine = "onednn"
            try:
                self.packed = torch.ops.quantized.linear_prepack(
                    qweight, None if bias is None else bias.detach().float()
                )
            finally:
                torch.backends.quantized.engine = engine
        self.reduce_range = not torch.cpu._is_vnni_supported()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1:  # no copy through torch.cat: its fresh pages would cost as much as it saves
            return torch.ops.quantized.linear_dynamic(x, self.packed, self.reduce_range)
        return torch.cat(
            [torch.ops.quantized.linear_dynamic(clip, self.packed, self.reduce_range) for clip in x.split(1)]
        )


def _linear(weight: torch.Tensor, bias: torch.Tensor | None, low_precision: bool) -> torch.nn.Module:
    if low_precision:
        return _Int8Linear(weight, bias)
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    linear.weight.data = weight.detach()
    if bias is not None:
        linear.bias.data = bias.detach()
    return linear


# Heads per batched product in ``_bf16_attention``: 4 keeps each block's scores (2.9 MB at 602 tokens) small
# enough for the allocator to reuse instead of faulting in fresh pages; measured 2x faster than all 12 at once.
_HEADS_PER_BLOCK = 4


def _bf16_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Softmax attention (queries already scaled) with bf16 matrix products, ``[batch, tokens, hidden]`` float32.

    On a CPU with AVX512-BF16 the two products run at twice the float32 rate; ``sdpa``'s bf16 kernel does not
    gain that at AST's 602 tokens (measured per layer: 5.9 ms here, 8.3 for fp32 ``sdpa``). The softmax is
    computed in float32 from the bf16 scores.
    """
    batch, heads, _, head_dim = query.shape

    def bf16(states: torch.Tensor) -> torch.Tensor:
        # One contiguous [batch * heads] stack each: the products run ~2x slower on the strided head views. The
        # keys' transpose stays a view, which costs the product nothing.
        return states.to(torch.bfloat16, memory_format=torch.contiguous_format).flatten(0, 1)

    query, key, value = bf16(query), bf16(key), bf16(value)
    context = torch.cat(
        [
            torch.bmm(torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1), v)
            for q, k, v in zip(*(t.split(_HEADS_PER_BLOCK) for t in (query, key, value)))
        ]
    )
    context = context.view(batch, heads, -1, head_dim).transpose(1, 2)
    return context.to(torch.float32, memory_format=torch.contiguous_format).flatten(2)


class _FastLayer(torch.nn.Module):
    """An ``ASTLayer`` for inference: one fused query/key/value projection with the attention scale folded
    into the queries' weights, GELU in place, and with ``low_precision`` int8 linear layers and bf16 attention
    (fp32 ``sdpa`` where the CPU lacks AVX512-BF16).

    With ``pooled_only`` (for the last layer) only the pooled tokens' outputs are computed: the classifier
    discards the others, so their queries, attention rows, output projection and MLP are skipped (~80 % of the
    layer's work) while their keys and values still enter the attention. ``last_hidden_state`` then holds the
    pooled tokens only.
    """

    def __init__(self, layer: torch.nn.Module, *, pooled_only: bool, low_precision: bool = True):
        super().__init__()
        attention = layer.attention
        self.num_heads, self.head_dim = attention.num_attention_heads, attention.head_dim
        self.pooled_only = pooled_only
        self.bf16_attention = low_precision and torch.cpu._is_avx512_bf16_supported()
        self.layernorm_before, self.layernorm_after = layer.layernorm_before, layer.layernorm_after
        q, k, v = attention.q_proj, attention.k_proj, attention.v_proj
        query_weight = q.weight * attention.scaling
        query_bias = None if q.bias is None else q.bias * attention.scaling
        if pooled_only:
            self.query = _linear(query_weight, query_bias, low_precision)
            weights, biases = [k.weight, v.weight], [k.bias, v.bias]
        else:
            weights, biases = [query_weight, k.weight, v.weight], [query_bias, k.bias, v.bias]
        # One matrix product for all of them: per-channel weight scales and one activation scale per clip make
        # it the same computation as separate products.
        self.projection = _linear(
            torch.cat(weights), None if q.bias is None else torch.cat(biases), low_precision
        )
        self.output = _linear(attention.o_proj.weight, attention.o_proj.bias, low_precision)
        self.fc1 = _linear(layer.mlp.fc1.weight, layer.mlp.fc1.bias, low_precision)
        self.fc2 = _linear(layer.mlp.fc2.weight, layer.mlp.fc2.bias, low_precision)

    def _heads(self, states: torch.Tensor, count: int) -> tuple[torch.Tensor, ...]:
        """``[batch, tokens, count * hidden]`` as ``count`` tensors ``[batch, heads, tokens, head_dim]``."""
        batch, tokens, _ = states.shape
        return (
            states.view(batch, tokens, count, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        )

    # Inference only: the int8 kernels have no gradient, and outside no_grad the in-place GELU would meet
    # their outputs as views of tensors that require one.
    @torch.no_grad()
    def forward(self, hidden_states: torch.Tensor, attention_mask=None, **kwargs) -> torch.Tensor:
        if attention_mask is not None:
            raise ValueError(
                "the fast path takes no attention_mask: AST pads its features, every frame is attended"
            )
        normed = self.layernorm_before(hidden_states)
        if self.pooled_only:
            (query,) = self._heads(self.query(normed[:, :POOLED_TOKENS]), 1)
            key, value = self._heads(self.projection(normed), 2)
            hidden_states = hidden_states[:, :POOLED_TOKENS]
        else:
            query, key, value = self._heads(self.projection(normed), 3)
        if self.bf16_attention:
            context = _bf16_attention(query, key, value)
        else:
            context = torch.nn.functional.scaled_dot_product_attention(query, key, value, scale=1.0)
            context = context.transpose(1, 2).flatten(2)
        hidden_states = self.output(context) + hidden_states
        # In place: the 3072-wide activations need no second buffer, whose fresh pages cost ~1 ms per layer.
        return self.fc2(torch.ops.aten.gelu_(self.fc1(self.layernorm_after(hidden_states)))) + hidden_states


def _fast_layers(model: torch.nn.Module, *, low_precision: bool = True) -> torch.nn.Module:
    """Replace every encoder layer by a ``_FastLayer``, the last one for the pooled tokens only: the fast CPU
    path (with ``low_precision``). Logits and ``pooler_output`` only.

    The classifier head stays fp32: it is one small matrix, so quantising it saves nothing and moves the
    logits most directly. Agreement with fp32 and the speed-up are measured by ``benchmarks/run.py`` (see
    BENCHMARKS.md, which also lists what was tried and dropped).
    """
    layers = model.audio_spectrogram_transformer.layers
    for index, layer in enumerate(layers):
        layers[index] = _FastLayer(layer, pooled_only=index == len(layers) - 1, low_precision=low_precision)
    return model


def predict_files(
    model: str | Path,
    audio_paths: Sequence[str | Path],
    top_k: int = 3,
    as_json: bool = False,
    fast: bool = False,
) -> list[Prediction]:
    """Classify files and print the results (the ``vocalsound-hf predict`` command).

    Prints one line per file (``path<TAB>label score ...``, followed by one indented line per window for
    long recordings), or with ``as_json`` one JSON object per line. A file that cannot be classified does
    not stop the others; the errors are raised together at the end as one ``ValueError``.
    """
    if top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {top_k}")
    classifier = AudioClassifier.from_pretrained(model, fast=fast)
    predictions, errors = [], []
    for path in audio_paths:
        try:
            prediction = classifier.classify(path)
        except (AudioInputError, FileNotFoundError) as err:
            errors.append(str(err))
            continue
        predictions.append(prediction)
        if as_json:
            print(json.dumps({"file": str(path), **prediction.to_dict(top_k)}), flush=True)
            continue
        print(
            f"{path}\t" + "  ".join(f"{label} {score:.3f}" for label, score in prediction.top(top_k)),
            flush=True,
        )
        if len(prediction.windows) > 1:
            for window in prediction.windows:
                found = (
                    "silent"
                    if window.label is None
                    else f"{window.label} {window.probabilities[window.label]:.3f}"
                )
                print(f"  {window.start_s:.2f}-{window.end_s:.2f} s\t{found}")
    if errors:
        raise ValueError(
            f"{len(errors)} of {len(audio_paths)} file(s) could not be classified: " + "; ".join(errors)
        )
    return predictions


__all__ = [
    "MAX_DURATION_S",
    "AudioClassifier",
    "AudioInputError",
    "Prediction",
    "Window",
    "load_audio",
    "predict_files",
    "rms_dbfs",
]
