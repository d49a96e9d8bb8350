"""How audio is decoded: a decoded ``datasets`` value or a file on disk, to a mono float32 waveform.

Training, the norm stats and the exporter get decoders from ``datasets``' ``Audio`` feature (torchcodec,
resampling and down-mixing on decode); ``predict`` and the Space open files themselves with ``load_audio``,
which turns bad input into an ``AudioInputError`` whose message is fit to show a user.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchaudio.functional import resample
from torchcodec.decoders import AudioDecoder, WavDecoder

from .release import TARGET_SAMPLING_RATE

# Longest recording accepted by default (the Space sets its own, shorter limit).
MAX_DURATION_S = 600.0
# Shortest clip worth classifying: a few fbank frames.
MIN_DURATION_S = 0.1
# A file that decodes to less than this fraction of the duration its header states was cut short.
TRUNCATED_RATIO = 0.9


class AudioInputError(ValueError):
    """Audio that cannot be classified; the message says why and is meant for the user."""


def mono(samples) -> torch.Tensor:
    """The float32 waveform ``[samples]`` of torchcodec ``AudioSamples``, channels averaged."""
    return samples.data.to(torch.float32).mean(dim=0)


def decoded_waveform(decoder) -> torch.Tensor:
    """The mono float32 waveform of a torchcodec decoder (as ``datasets`` returns ``Audio`` values)."""
    return mono(decoder.get_all_samples())


def load_audio(
    path: str | Path, *, sampling_rate: int = TARGET_SAMPLING_RATE, max_duration_s: float = MAX_DURATION_S
) -> torch.Tensor:
    """Decode an audio file to a mono float32 waveform at ``sampling_rate``.

    Any format and channel count FFmpeg decodes (through torchcodec) is accepted; channels are averaged
    and the rate is converted with ``torchaudio.functional.resample``. Raises ``FileNotFoundError`` for a
    missing file and ``AudioInputError`` for an empty, non-audio, truncated, too short or too long one.
    """
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
    waveform = mono(samples)
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
    return waveform


def _open_decoder(path: Path):
    """torchcodec's WAV decoder for PCM and float WAV files, its FFmpeg decoder for everything else."""
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
