"""Kaldi log-mel fbank features as AST expects them.

Pure functions here; the randomised training augmentations live in ``augment``.

``batch_fbank`` computes, for a whole batch at once and on the tensors' own device, what transformers'
``ASTFeatureExtractor`` computes clip by clip through ``torchaudio.compliance.kaldi.fbank`` (equal to float32
rounding: the same operations in the same order).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from .release import PAPER_NORM_MEAN, PAPER_NORM_STD, TARGET_SAMPLING_RATE

# Kaldi's frame settings at 16 kHz, as ASTFeatureExtractor uses them (torchaudio defaults): 25 ms windows
# every 10 ms, zero-padded to the next power of two for the FFT.
FRAME_LENGTH = 400
FRAME_SHIFT = 160
FFT_LENGTH = 512
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
# Kaldi floors every mel energy at float32 epsilon before the log.
LOG_FLOOR = torch.finfo(torch.float32).eps
# Frames per chunk of work. On a CPU, small enough that a chunk's buffers stay in cache (1024 measured
# fastest on 2 cores, ahead of 512 and 2048-8192); on a GPU, large, so that each kernel has work enough.
_FRAMES_PER_CHUNK = {"cpu": 1024}
_FRAMES_PER_CHUNK_ELSEWHERE = 65536
_FILTERS_PER_GROUP = 16
# How a chunk's log-mel reaches the output. A CPU chunk holds a few clips: normalising each clip straight into
# the output saves a pass over the chunk (whole-chunk writes measured 0.88-0.92x as fast on 2 cores). A GPU
# chunk holds hundreds: whole-chunk writes launch a few kernels instead of three per clip (2.1-2.3x as fast on
# an H200).
_PER_CLIP_WRITES = {"cpu"}


class _FilterGroup(NamedTuple):
    first: int  # the group's mel filters are first..last - 1
    last: int
    start: int  # the columns of the interleaved [re², im²] spectrum they cover are start..stop - 1
    stop: int
    weights: Tensor  # [stop - start, last - first]


class _Scratch(NamedTuple):
    """Buffers that every chunk of a ``batch_fbank`` call reuses for its FFT input and its log-mel."""

    rows: Tensor  # [frames, 512], zeroed: the FFT input, whose last 112 columns stay zero (the FFT padding)
    mel: Tensor  # [frames, num_mel_bins]


def make_feature_extractor(
    max_length: int = 512,
    mean: float = PAPER_NORM_MEAN,
    std: float = PAPER_NORM_STD,
    num_mel_bins: int = 128,
):
    """transformers' ``ASTFeatureExtractor`` configured for VocalSound.

    ``max_length`` must equal the model's ``input_tdim`` (``config.max_length``): transformers ignores a
    ``max_length`` passed at call time, so it is set on the instance and saved with it.
    """
    from transformers import ASTFeatureExtractor

    return ASTFeatureExtractor(
        sampling_rate=TARGET_SAMPLING_RATE,
        num_mel_bins=num_mel_bins,
        max_length=max_length,
        mean=float(mean),
        std=float(std),
        do_normalize=True,
        return_attention_mask=False,
    )


def num_frames(num_samples: int) -> int:
    """Number of Kaldi frames (``snip_edges=True``) of a clip of ``num_samples`` samples at 16 kHz."""
    return 0 if num_samples < FRAME_LENGTH else 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT


def frame_span(num_frames: int) -> int:
    """Samples that ``num_frames`` consecutive Kaldi frames read: the samples of a ``num_frames``-frame window."""
    return FRAME_LENGTH + (num_frames - 1) * FRAME_SHIFT


def normalize_fbank(fbank: Tensor, mean: float = PAPER_NORM_MEAN, std: float = PAPER_NORM_STD) -> Tensor:
    """AST's normalisation ``(fbank - mean) / (2 * std)``, as ``ASTFeatureExtractor.normalize`` does it."""
    return (fbank - mean) / (std * 2)


@functools.lru_cache(maxsize=16)
def _mel_filters(
    num_mel_bins: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, list[_FilterGroup]]:
    """Kaldi's Hann window and triangular mel bank, the bank split into groups of neighbouring filters.

    Each filter covers a handful of FFT bins, so a dense ``[257, num_mel_bins]`` product is ~90 % multiplications
    by zero; multiplying each group of 16 filters only by the bins it covers does ~7x less work. The weights of
    each bin are repeated for its real and imaginary parts, which are squared in place and summed by the product
    itself (cheaper than ``abs()`` of a complex tensor). Cached per device and dtype so that a training loop
    builds them once, not once per batch.
    """
    from torchaudio.compliance.kaldi import get_mel_banks

    # Arguments as kaldi.fbank passes them: high_freq 0 (Nyquist), VTLN off (warp 1.0, default cut-offs).
    bank, _ = get_mel_banks(
        num_mel_bins, FFT_LENGTH, float(TARGET_SAMPLING_RATE), LOW_FREQ, 0.0, 100.0, -500.0, 1.0
    )
    bank = bank.T  # [FFT_LENGTH // 2 bins, num_mel_bins]; kaldi's extra Nyquist column is all zeros
    groups = []
    for first in range(0, num_mel_bins, _FILTERS_PER_GROUP):
        last = min(first + _FILTERS_PER_GROUP, num_mel_bins)
        bins = bank[:, first:last].any(dim=1).nonzero()
        # A group of empty filters (possible with many mel bins) still needs one bin to yield its zeros.
        low, high = (int(bins[0]), int(bins[-1]) + 1) if len(bins) else (0, 1)
        weights = bank[low:high, first:last].repeat_interleave(2, dim=0).to(device=device, dtype=dtype)
        groups.append(_FilterGroup(first, last, 2 * low, 2 * high, weights))
    window = torch.hann_window(FRAME_LENGTH, periodic=False, device=device, dtype=dtype)
    return window, groups


def _validated_clips(
    waveforms: Sequence[Tensor] | Tensor, lengths: Sequence[int] | Tensor | None
) -> tuple[Tensor | list[Tensor], list[int]]:
    """Check the input; return the clips (a padded ``[B, samples]`` tensor or a list of 1-D tensors) and lengths."""
    if isinstance(waveforms, Tensor):
        if waveforms.dim() != 2:
            hint = " (wrap a single clip in a list)" if waveforms.dim() == 1 else ""
            raise ValueError(
                "waveforms: expected a list of 1-D tensors or a 2-D padded batch [batch, samples] with lengths, "
                f"got a {waveforms.dim()}-D tensor{hint}"
            )
        if lengths is None:
            raise ValueError(
                "lengths: a 2-D padded batch needs the number of valid samples of every row (lengths=[...]); "
                "pass a list of 1-D tensors instead if the clips are not padded"
            )
        # One host sync for B integers: the frame counts decide the shapes of everything below.
        lengths = [int(n) for n in (lengths.tolist() if isinstance(lengths, Tensor) else lengths)]
        if len(lengths) != waveforms.shape[0]:
            raise ValueError(
                f"lengths: expected {waveforms.shape[0]} lengths (one per row), got {len(lengths)}"
            )
        if any(n < 0 or n > waveforms.shape[1] for n in lengths):
            raise ValueError(
                f"lengths: every length must be in [0, {waveforms.shape[1]}] (the padded width), got {lengths}"
            )
        _check_float(waveforms, "waveforms")
        clips: Tensor | list[Tensor] = waveforms
    else:
        if lengths is not None:
            raise ValueError("lengths: only for a 2-D padded batch; a list of clips carries its own lengths")
        clips = [torch.as_tensor(w) for w in waveforms]
        if not clips:
            raise ValueError("waveforms: expected at least one clip, got an empty list")
        for i, clip in enumerate(clips):
            if clip.dim() != 1:
                raise ValueError(
                    f"waveforms[{i}]: expected a 1-D (mono) waveform, got shape {tuple(clip.shape)}"
                )
            _check_float(clip, f"waveforms[{i}]")
            if clip.device != clips[0].device:
                raise ValueError(
                    f"waveforms[{i}]: on {clip.device}, but waveforms[0] is on {clips[0].device}"
                )
        lengths = [clip.shape[0] for clip in clips]
    for i, n in enumerate(lengths):
        if n < FRAME_LENGTH:
            # kaldi.fbank (and so ASTFeatureExtractor) stops such clips with a bare AssertionError; say why.
            raise ValueError(
                f"waveforms[{i}]: {n} samples is shorter than one Kaldi frame ({FRAME_LENGTH} samples = 25 ms at "
                "16 kHz), which kaldi.fbank and ASTFeatureExtractor reject too; pad such clips before featurising"
            )
    return clips, lengths


def _check_float(waveform: Tensor, name: str) -> None:
    if not waveform.is_floating_point():
        raise TypeError(
            f"{name}: expected a floating-point waveform in [-1, 1], got {waveform.dtype}; "
            "convert integer PCM first (e.g. int16 / 32768)"
        )


def _log_mel(
    waveforms: Tensor, num_frames: int, scratch: _Scratch, window: Tensor, groups: list[_FilterGroup]
) -> Tensor:
    """Kaldi log-mel ``[b, num_frames, mel]`` of the first ``num_frames`` frames of each row of ``waveforms``.

    Written by hand because torchaudio's ``kaldi.fbank`` takes one waveform at a time. Each step is the batched
    form of the matching step of ``kaldi.fbank``, in the same order. The result is a view of ``scratch.mel``.
    """
    frames = waveforms.unfold(1, FRAME_LENGTH, FRAME_SHIFT)[:, :num_frames]  # a view, [b, frames, 400]
    used = frames.shape[0] * num_frames
    rows, mel = (buffer[:used].view(*frames.shape[:2], -1) for buffer in scratch)
    frame = rows[..., :FRAME_LENGTH]
    centred = frames - frames.mean(dim=-1, keepdim=True)
    # Pre-emphasis within each frame, x[j] - 0.97 x[j-1]: multiply, then subtract, as Kaldi does (a fused
    # ``sub(alpha=)`` rounds differently, visibly so in the low-energy bands). A frame's first sample stays
    # at the buffer's 0: Kaldi's (1 - 0.97) x[0] (its replicate padding) meets the Hann window's exact 0.
    torch.sub(centred[..., 1:], centred[..., :-1] * PREEMPHASIS, out=frame[..., 1:])
    frame.mul_(window)
    # A 512-wide row is faster to transform than rfft(n=512) of a 400-wide one.
    spectrum = torch.view_as_real(torch.fft.rfft(rows)).flatten(-2).square_()  # [re0², im0², re1², ...]
    for group in groups:
        # Straight into the group's columns: concatenating separate outputs measured ~2x slower.
        torch.matmul(
            spectrum[..., group.start : group.stop], group.weights, out=mel[..., group.first : group.last]
        )
    return mel.clamp_min_(LOG_FLOOR).log_()


def batch_fbank(
    waveforms: Sequence[Tensor] | Tensor,
    sampling_rate: int = TARGET_SAMPLING_RATE,
    num_mel_bins: int = 128,
    max_length: int = 512,
    mean: float = PAPER_NORM_MEAN,
    std: float = PAPER_NORM_STD,
    lengths: Sequence[int] | Tensor | None = None,
    normalize: bool = True,
) -> Tensor:
    """AST input features of a whole batch at once, on the waveforms' device.

    Equal (to float32 rounding) to ``ASTFeatureExtractor`` with the same ``num_mel_bins``, ``max_length``,
    ``mean`` and ``std``, i.e. to ``torchaudio.compliance.kaldi.fbank(w[None], window_type="hanning",
    num_mel_bins=num_mel_bins)`` per clip (25 ms Hann frames every 10 ms, ``snip_edges``, per-frame DC removal,
    pre-emphasis 0.97, 512-point power spectrum, Kaldi mel bank from 20 Hz to Nyquist, log floored at float32
    epsilon), zero-padded at the end or cut to the first ``max_length`` frames, then ``(x - mean) / (2 * std)``.
    Frames past ``max_length`` are never computed.

    Args:
        waveforms: a list of 1-D float tensors (mono, in [-1, 1]), or a padded ``[batch, samples]`` tensor
            together with ``lengths``. All on one device; the result is computed there.
        sampling_rate: must be 16000; resampling is the caller's job.
        num_mel_bins: mel bands (more than 3, as Kaldi requires).
        max_length: frames of the output; must equal the model's ``config.max_length``.
        mean, std: normalisation statistics (the paper's by default).
        lengths: the number of valid samples of each row of a padded batch. Frames reaching past a clip's length
            are padding, exactly as for the unpadded clip, whatever the padded samples hold.
        normalize: ``False`` returns the zero-padded log-mel before normalisation (where the original recipe
            applies SpecAugment); normalise it afterwards with :func:`normalize_fbank`.

    Returns:
        float32 ``[batch, max_length, num_mel_bins]``.

    Raises:
        ValueError: a wrong sampling rate, shape or length, or a clip shorter than one frame (400 samples),
            which ``kaldi.fbank`` and ``ASTFeatureExtractor`` reject too (with an ``AssertionError``).
        TypeError: integer (PCM) waveforms.
    """
    if sampling_rate != TARGET_SAMPLING_RATE:
        raise ValueError(
            f"sampling_rate: expected {TARGET_SAMPLING_RATE} Hz, got {sampling_rate}; resample the audio first "
            "(e.g. torchaudio.functional.resample, or datasets' Audio(sampling_rate=16000))"
        )
    if max_length < 1:
        raise ValueError(f"max_length: expected a positive number of frames, got {max_length}")
    if num_mel_bins <= 3:
        raise ValueError(f"num_mel_bins: Kaldi needs more than 3 mel bins, got {num_mel_bins}")
    clips, clip_lengths = _validated_clips(waveforms, lengths)
    device = clips.device if isinstance(clips, Tensor) else clips[0].device
    window, groups = _mel_filters(num_mel_bins, device, torch.float32)
    frame_counts = [min(num_frames(n), max_length) for n in clip_lengths]
    # Padding is 0 on the log-mel, as ASTFeatureExtractor pads before normalising.
    pad_value = normalize_fbank(torch.tensor(0.0), mean, std).item() if normalize else 0.0
    features = torch.empty(len(frame_counts), max_length, num_mel_bins, device=device)
    # Chunks of clips of similar lengths, so that few frames are computed only to be dropped as padding.
    order = sorted(range(len(frame_counts)), key=frame_counts.__getitem__)
    step = max(1, _FRAMES_PER_CHUNK.get(device.type, _FRAMES_PER_CHUNK_ELSEWHERE) // max(frame_counts))
    width = step * max(frame_counts)
    scratch = _Scratch(
        rows=torch.zeros(width, FFT_LENGTH, device=device),
        mel=torch.empty(width, num_mel_bins, device=device),
    )
    for start in range(0, len(order), step):
        members = order[start : start + step]
        counts = [frame_counts[i] for i in members]
        chunk_frames = max(counts)
        samples = frame_span(chunk_frames)  # later samples reach no computed frame
        if isinstance(clips, Tensor):
            chunk = clips[torch.tensor(members, device=device), :samples]
        else:
            chunk = pad_sequence([clips[i][:samples] for i in members], batch_first=True)
        log_mel = _log_mel(chunk.to(torch.float32), chunk_frames, scratch, window, groups)
        # Frames that reach past a clip's own end are padding, whatever the padded samples hold.
        if device.type in _PER_CLIP_WRITES:
            for clip, frames, values in zip(members, counts, log_mel):
                if normalize:  # normalize_fbank
                    torch.sub(values[:frames], mean, out=features[clip, :frames]).div_(std * 2)
                else:
                    features[clip, :frames] = values[:frames]
                features[clip, frames:] = pad_value
        else:
            if normalize:
                log_mel.sub_(mean).div_(std * 2)  # normalize_fbank, in place
            past_end = (
                torch.arange(chunk_frames, device=device) >= torch.tensor(counts, device=device)[:, None]
            )
            rows = torch.tensor(members, device=device)
            features[rows, :chunk_frames] = log_mel.masked_fill_(past_end[..., None], pad_value)
            features[rows, chunk_frames:] = pad_value
    return features
