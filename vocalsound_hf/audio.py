"""How audio is decoded: one decoder for every path from audio to the model's input.

FFmpeg (through torchcodec) resamples to the model's rate and down-mixes to mono while it decodes, as
transformers' audio-classification pipeline does (``ffmpeg -ar 16000 -ac 1``), so a saved model gets the
same input in a plain ``pipeline`` as here. Training, the norm stats and the exporter get such decoders from
``datasets`` (``decode_as_model_input`` casts a column to ``Audio(sampling_rate=16000, num_channels=1)``,
which builds them); ``predict`` and the Space open files with ``load_audio``, which builds the same decoder,
so an upload is featurised exactly as its copy in the training set was. FFmpeg's mono mix of stereo is
``(left + right) / sqrt(2)``, not the mean. ``load_audio`` turns bad input into an ``AudioInputError`` fit
to show a user.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import datasets
import torch
from torchcodec.decoders import AudioDecoder, WavDecoder

from .release import TARGET_SAMPLING_RATE

# Longest recording accepted by default (the Space sets its own, shorter limit).
MAX_DURATION_S = 600.0
# Shortest clip worth classifying: a few fbank frames.
MIN_DURATION_S = 0.1
# A file that decodes to less than this fraction of the duration its header states was cut short. A WAV
# header states its data size exactly, so a WAV may fall short by no more than WAV_TOLERANCE_S.
TRUNCATED_RATIO = 0.9
WAV_TOLERANCE_S = 0.002
# Seconds per chunk of ``stream_audio``: 1.9 MB of float32 at 16 kHz, and few enough calls into the decoder.
STREAM_CHUNK_S = 30.0


_UNREADABLE = "{name}: not a readable audio file (wav, flac, mp3, ogg, ...)"
_UNDECODABLE = "{name}: no audio could be decoded (the file is truncated, corrupt or empty)"


class AudioInputError(ValueError):
    """Audio that cannot be classified; the message says why and is meant for the user."""


def mono(samples) -> torch.Tensor:
    """The float32 waveform ``[samples]`` of torchcodec ``AudioSamples``, channels averaged."""
    return samples.data.to(torch.float32).mean(dim=0)


def open_decoder(source, sampling_rate: int = TARGET_SAMPLING_RATE) -> AudioDecoder:
    """torchcodec's decoder of a file (or bytes) at ``sampling_rate``, mono: what ``datasets.Audio`` builds."""
    return AudioDecoder(source, sample_rate=sampling_rate, num_channels=1)


def decode_as_model_input(
    dataset: datasets.Dataset | datasets.IterableDataset | datasets.DatasetDict,
    sampling_rate: int = TARGET_SAMPLING_RATE,
):
    """``dataset`` with its ``audio`` column decoded as ``open_decoder`` does (resampled and mono by FFmpeg)."""
    return dataset.cast_column("audio", datasets.Audio(sampling_rate=sampling_rate, num_channels=1))


def decoded_waveform(decoder) -> torch.Tensor:
    """The mono float32 waveform of a torchcodec decoder (as ``datasets`` returns ``Audio`` values)."""
    return mono(decoder.get_all_samples())


def check_finite(waveform: torch.Tensor, sampling_rate: int, name: str, first_sample: int = 0) -> None:
    """Raise ``AudioInputError`` naming the first NaN or infinite sample of ``waveform`` and its time.

    A single one makes every feature of its window NaN, and the scores with them. ``first_sample`` is the
    index of the waveform's first sample in its recording, for a chunk of a stream.
    """
    bad = torch.nonzero(~torch.isfinite(waveform.reshape(-1)))
    if len(bad):
        index = int(bad[0])
        value = waveform.reshape(-1)[index].item()
        index += first_sample
        raise AudioInputError(
            f"{name}: sample {index} (at {index / sampling_rate:.3f} s) is {value}; "
            "audio samples must be finite numbers"
        )


def load_audio(
    path: str | Path, *, sampling_rate: int = TARGET_SAMPLING_RATE, max_duration_s: float = MAX_DURATION_S
) -> torch.Tensor:
    """Decode an audio file to a mono float32 waveform at ``sampling_rate``.

    Any format and channel count FFmpeg decodes is accepted; FFmpeg resamples and down-mixes as it decodes,
    as for training (``open_decoder``). Raises ``FileNotFoundError`` for a missing file and
    ``AudioInputError`` for an empty, non-audio, truncated, too short, too long or non-finite one.
    """
    name = Path(path).name
    decoder, header_s, exact = _open_checked(Path(path), sampling_rate, max_duration_s)
    try:
        waveform = decoded_waveform(decoder)
    except RuntimeError:
        raise AudioInputError(_UNDECODABLE.format(name=name)) from None
    duration_s = waveform.numel() / sampling_rate
    if duration_s > max_duration_s:
        raise AudioInputError(_too_long(name, duration_s, max_duration_s))
    _check_length(name, duration_s, header_s, exact)
    check_finite(waveform, sampling_rate, name)
    return waveform


def stream_audio(
    path: str | Path,
    *,
    sampling_rate: int = TARGET_SAMPLING_RATE,
    chunk_s: float = STREAM_CHUNK_S,
    max_duration_s: float | None = None,
) -> Iterator[torch.Tensor]:
    """Decode an audio file chunk by chunk: mono float32 waveforms of ``chunk_s`` seconds (the last shorter).

    The same decoder and checks as ``load_audio``, for recordings too long to hold at once: an hour at
    16 kHz is 230 MB of float32. Sequential ranges of one torchcodec decoder concatenate to exactly what
    ``load_audio`` returns. A non-finite sample is reported with its time in the recording; a file that ends
    before its header says is reported as truncated once the stream reaches its end.
    """
    name = Path(path).name
    decoder, header_s, exact = _open_checked(Path(path), sampling_rate, max_duration_s)
    decoded = 0
    while True:
        start_s = decoded / sampling_rate
        try:
            chunk = mono(decoder.get_samples_played_in_range(start_s, start_s + chunk_s))
        except RuntimeError:
            # torchcodec raises for a range past the last sample: the end, unless nothing decoded at all (a
            # file cut short mid-stream is caught against its header below).
            if decoded == 0:
                raise AudioInputError(_UNDECODABLE.format(name=name)) from None
            break
        if chunk.numel() == 0:
            break
        check_finite(chunk, sampling_rate, name, first_sample=decoded)
        decoded += chunk.numel()
        if max_duration_s is not None and decoded / sampling_rate > max_duration_s:
            raise AudioInputError(_too_long(name, decoded / sampling_rate, max_duration_s))
        yield chunk
    _check_length(name, decoded / sampling_rate, header_s, exact)


def _open_checked(
    path: Path, sampling_rate: int, max_duration_s: float | None
) -> tuple[AudioDecoder, float | None, bool]:
    """``_open_with_header`` of an existing, non-empty file whose header is within ``max_duration_s``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioInputError(f"{path.name}: the file is empty")
    decoder, header_s, exact = _open_with_header(path, sampling_rate)
    # Refuse an hour-long file from its header, before decoding it.
    if max_duration_s is not None and header_s is not None and header_s > max_duration_s:
        raise AudioInputError(_too_long(path.name, header_s, max_duration_s))
    return decoder, header_s, exact


def _check_length(name: str, duration_s: float, header_s: float | None, exact: bool) -> None:
    """Refuse a file that decoded to less than its header states (truncated) or to too little to classify."""
    shortest_s = header_s - WAV_TOLERANCE_S if exact else TRUNCATED_RATIO * (header_s or 0.0)
    if header_s is not None and duration_s < shortest_s:
        raise AudioInputError(
            f"{name}: the file is truncated (its header says {header_s:.2f} s, only {duration_s:.2f} s decode)"
        )
    if duration_s < MIN_DURATION_S:
        raise AudioInputError(
            f"{name}: {duration_s:.3f} s is too short (at least {MIN_DURATION_S} s is needed)"
        )


def _open_with_header(path: Path, sampling_rate: int) -> tuple[AudioDecoder, float | None, bool]:
    """The file's decoder (``open_decoder``), the duration its header states, and whether that is exact (a
    WAV's data size) or FFmpeg's estimate."""
    # FFmpeg estimates a WAV's duration from the file size and decodes whatever is there, so a WAV cut short
    # would pass unnoticed; WavDecoder reads the header's data size.
    try:
        header_s, exact = WavDecoder(str(path)).metadata.duration_seconds_from_header, True
    except RuntimeError:
        header_s, exact = None, False
    try:
        decoder = open_decoder(str(path), sampling_rate)
    except RuntimeError:
        if exact:  # a valid WAV header over data FFmpeg cannot read
            raise AudioInputError(_UNDECODABLE.format(name=path.name)) from None
        raise AudioInputError(_UNREADABLE.format(name=path.name)) from None
    except ValueError:
        raise AudioInputError(_UNREADABLE.format(name=path.name)) from None
    if not exact:
        header_s = decoder.metadata.duration_seconds_from_header
    return decoder, header_s, exact


def _too_long(name: str, duration_s: float, max_duration_s: float) -> str:
    return f"{name}: {duration_s / 60:.1f} min is longer than the limit of {max_duration_s / 60:g} min"
