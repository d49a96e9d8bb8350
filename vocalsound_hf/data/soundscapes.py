"""Synthetic soundscapes with known truth, to measure sound-event detection on long recordings.

A soundscape is coloured background noise (its colour and level drawn per soundscape, with stretches of
near-silence where it drops by ``silence_drop_db``) with clips of a split the model never trained on
(``test``, or ``validation`` to choose detection thresholds on) placed at random times, each at a
signal-to-noise ratio drawn from a range, a share of them overlapping another. Only a clip's active part is
mixed in (its leading and trailing near-silence cut off by ``active_span``): that part is its truth event,
and all outside the events is background. Not Scaper: its soxbindings does not build, and it needs sox.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import soundfile as sf
import torch
from tqdm.auto import tqdm

from ..audio import decode_as_model_input, decoded_waveform
from ..events import Event, event_counts, events_to_audacity, events_to_csv
from ..fileio import staged_path
from ..release import CLASS_NAMES, SOUNDSCAPE_SPLITS
from ..release import TARGET_SAMPLING_RATE as SR
from .builder import load_vocalsound
from .stats import _is_exported_dataset

logger = logging.getLogger(__name__)

# A clip's RMS over its active part against the background's nominal RMS: from as loud as the background
# (where detection gets hard) to well above it (easy), the range of DCASE's synthetic soundscapes.
SNR_DB: tuple[float, float] = (0.0, 20.0)
# The share of events that overlap another one (they come in pairs): enough to measure a detector on
# polyphony, few enough that most events stand alone as in most real recordings.
OVERLAP_SHARE = 0.3
# The background's RMS in dB below full scale: a quiet room to a noisy one, leaving SNR_DB's 20 dB of room
# below full scale for the clips.
BACKGROUND_DBFS: tuple[float, float] = (-50.0, -30.0)
# Exponent a of the background's 1/f^a power spectrum (0 white, 1 pink, 2 brown): around pink, like room noise.
NOISE_EXPONENT: tuple[float, float] = (0.5, 1.5)
# Stretches of near-silence, where the background drops by SILENCE_DROP_DB: recordings have pauses, and a
# detector must not take the change of level for an event.
SILENCE_SHARE = 0.2
SILENCE_S: tuple[float, float] = (1.0, 4.0)
SILENCE_DROP_DB = 40.0
# About one event every 6 s, at most half of the time covered by events: background between them.
EVENTS_PER_MINUTE = 10.0
MAX_FILL = 0.5
# Between events that do not overlap: twice the scoring's 0.5 s onset collar, so that no detection can match
# a neighbour of the event it found.
MIN_GAP_S = 1.0
# The active part of a clip: from its first to its last 10 ms frame less than 30 dB below its loudest frame.
ACTIVE_FRAME_S = 0.01
ACTIVE_THRESHOLD_DB = 30.0
# Ramps at a clip's cut ends and at the edges of a near-silent stretch, so that neither clicks.
FADE_S = 0.005
SILENCE_RAMP_S = 0.05
# The loudest sample of a mix: just under full scale, so that rounding to 16 bits cannot clip it.
PEAK = 0.99
MANIFEST_NAME = "soundscapes.json"
TRUTH_CSV = "truth.csv"


@dataclass(frozen=True)
class SoundscapeParams:
    """How soundscapes are mixed (ranges are ``(low, high)``, drawn uniformly); the module constants say why."""

    snr_db: tuple[float, float] = SNR_DB
    overlap_share: float = OVERLAP_SHARE
    background_dbfs: tuple[float, float] = BACKGROUND_DBFS
    noise_exponent: tuple[float, float] = NOISE_EXPONENT
    silence_share: float = SILENCE_SHARE
    silence_s: tuple[float, float] = SILENCE_S
    silence_drop_db: float = SILENCE_DROP_DB
    events_per_minute: float = EVENTS_PER_MINUTE
    max_fill: float = MAX_FILL
    min_gap_s: float = MIN_GAP_S

    def __post_init__(self):
        ranges = ("snr_db", "background_dbfs", "noise_exponent", "silence_s")
        ok = {name: getattr(self, name)[0] <= getattr(self, name)[1] for name in ranges}
        ok["silence_s"] &= self.silence_s[0] > 0
        ok |= {"overlap_share": 0 <= self.overlap_share <= 1, "silence_share": 0 <= self.silence_share < 1}
        ok |= {"events_per_minute": self.events_per_minute > 0, "max_fill": 0 < self.max_fill <= 1}
        ok["min_gap_s"] = self.min_gap_s >= 0
        for name in (name for name, good in ok.items() if not good):
            raise ValueError(f"soundscape parameter {name}: {getattr(self, name)} is out of range")


@dataclass(frozen=True)
class Soundscape:
    """One soundscape: its mono 16 kHz waveform, its truth events by onset and the clip file of each event."""

    name: str
    waveform: torch.Tensor
    events: list[Event]
    sources: list[str]


def active_span(waveform: torch.Tensor, threshold_db: float = ACTIVE_THRESHOLD_DB) -> tuple[int, int] | None:
    """Samples ``[start, end)`` of a 16 kHz clip from its first to its last ``ACTIVE_FRAME_S`` frame less than
    ``threshold_db`` below its loudest frame (mean-square energy); ``None`` for a silent clip."""
    frame = round(ACTIVE_FRAME_S * SR)
    length = waveform.numel()
    padded = torch.nn.functional.pad(waveform.reshape(-1).to(torch.float64), (0, (-length) % frame))
    energy = padded.reshape(-1, frame).square().mean(dim=1)
    peak = energy.max() if len(energy) else torch.tensor(0.0)
    if not peak > 0:
        return None
    loud = torch.nonzero(energy >= peak * 10 ** (-threshold_db / 10)).flatten()
    return int(loud[0]) * frame, min(length, (int(loud[-1]) + 1) * frame)


def background_noise(
    num_samples: int, generator: torch.Generator, params: SoundscapeParams = SoundscapeParams()
) -> tuple[torch.Tensor, float]:
    """Coloured noise with near-silent stretches, and its nominal RMS (full scale 1) that SNRs are measured
    against; ``mix_soundscape`` draws it first from its generator, so that a seed gives a mix's background."""
    exponent = _uniform(params.noise_exponent, generator)
    level = 10 ** (_uniform(params.background_dbfs, generator) / 20)
    # Shaped at a power-of-two length and cut back: an FFT of an awkward (e.g. prime) length is far slower.
    size = 1 << max(1, (num_samples - 1).bit_length())
    spectrum = torch.fft.rfft(torch.randn(size, generator=generator, dtype=torch.float64))
    frequencies = torch.fft.rfftfreq(size, d=1 / SR, dtype=torch.float64)
    shape = torch.zeros_like(frequencies)  # no DC
    shape[1:] = frequencies[1:] ** (-exponent / 2)
    noise = torch.fft.irfft(spectrum * shape, n=size)[:num_samples]
    noise *= level / noise.square().mean().sqrt()
    return (noise * _silence_envelope(num_samples, generator, params)).to(torch.float32), level


def mix_soundscape(
    clips: Sequence[tuple[str, torch.Tensor]],
    *,
    duration_s: float,
    generator: torch.Generator,
    params: SoundscapeParams = SoundscapeParams(),
) -> tuple[torch.Tensor, list[Event]]:
    """Mix ``(label, 16 kHz mono waveform)`` clips into a soundscape of ``duration_s``; return it and the truth.

    Each clip's active part (``active_span``) goes at a random time, at an SNR drawn from ``params.snr_db``;
    ``params.overlap_share`` of the events overlap one other (in pairs, by at least a quarter of the shorter),
    the rest lie ``params.min_gap_s`` apart. A mix louder than ``PEAK`` is scaled down as a whole. Event ``i``
    is clip ``i``'s. ``ValueError`` for a silent clip or clips that do not fit."""
    num_samples = round(duration_s * SR)
    if num_samples < SR:
        raise ValueError(f"a soundscape lasts at least 1 s, got duration_s={duration_s}")
    segments, rms = [], []
    for index, (label, waveform) in enumerate(clips):
        span = active_span(waveform)
        if span is None:
            raise ValueError(f"clip {index} ({label}) is silent: it has no active part to place")
        segment = waveform.reshape(-1)[span[0] : span[1]].to(torch.float64)
        rms.append(float(segment.square().mean().sqrt()))
        segments.append(_faded(segment, round(FADE_S * SR)))
    mix, level = background_noise(num_samples, generator, params)
    mix = mix.to(torch.float64)
    snrs = [_uniform(params.snr_db, generator) for _ in segments]
    lengths = [len(segment) for segment in segments]
    starts = _arrange(lengths, num_samples, round(params.min_gap_s * SR), params.overlap_share, generator)
    if starts is None:
        total_s = sum(lengths) / SR
        raise ValueError(
            f"{len(clips)} clips of {total_s:.1f} s do not fit in {duration_s} s with their gaps"
        )
    events = []
    for (label, _), segment, clip_rms, snr, start in zip(clips, segments, rms, snrs, starts):
        mix[start : start + len(segment)] += segment * (level * 10 ** (snr / 20) / clip_rms)
        events.append(Event(label, start / SR, (start + len(segment)) / SR))
    peak = float(mix.abs().max())
    if peak > PEAK:
        mix *= PEAK / peak
    return mix.to(torch.float32), events


def soundscapes_of_split(
    data_dir: str | os.PathLike,
    split: str = "test",
    count: int = 20,
    duration_s: float = 60.0,
    seed: int = 0,
    *,
    config: str = "16k",
    params: SoundscapeParams = SoundscapeParams(),
) -> list[Soundscape]:
    """``count`` soundscapes of ``duration_s`` from ``split`` of a release (folder or zip) or an exported dataset.

    Each takes about ``params.events_per_minute`` clips, fewer where their active parts would cover more than
    ``params.max_fill`` of it (a longer clip is cut to that); clips are drawn without replacement across the
    whole set, and reused only when the split has too few. The same seed gives the same soundscapes."""
    if split not in SOUNDSCAPE_SPLITS:
        raise ValueError(
            f"split must be one of {', '.join(SOUNDSCAPE_SPLITS)} (not trained on), got {split!r}"
        )
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    rows, labels = _read_split(Path(data_dir), split, config)
    per_scape = max(1, round(params.events_per_minute * duration_s / 60))
    clips = _draw_clips(rows, labels, count * per_scape, _generator(seed, "clips"), f"{data_dir} ({split})")
    budget = int(params.max_fill * duration_s * SR)
    scapes, next_clip = [], 0
    width = max(3, len(str(count - 1)))
    for index in tqdm(range(count), desc="Mixing soundscapes", unit=" soundscapes"):
        chosen, used = [], 0
        while next_clip < len(clips) and len(chosen) < per_scape:
            file_name, label, segment = clips[next_clip]
            if chosen and used + len(segment) > budget:
                break  # this clip starts the next soundscape
            chosen.append((file_name, label, segment[:budget]))
            used += len(chosen[-1][2])
            next_clip += 1
        generator = _generator(seed, "mix", index)
        mix, events = mix_soundscape(
            [c[1:] for c in chosen], duration_s=duration_s, generator=generator, params=params
        )
        order = sorted(range(len(events)), key=lambda i: events[i].onset_s)
        name = f"soundscape_{index:0{width}d}"
        scapes.append(Soundscape(name, mix, [events[i] for i in order], [chosen[i][0] for i in order]))
    return scapes


def make_soundscapes(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    split: str = "test",
    count: int = 20,
    duration_s: float = 60.0,
    seed: int = 0,
    config: str = "16k",
    params: SoundscapeParams = SoundscapeParams(),
) -> Path:
    """Write ``soundscapes_of_split``'s soundscapes to a new folder ``out_dir`` and return it.

    It holds ``soundscape_000.wav``, ... (16-bit PCM, 16 kHz, mono), an Audacity label track of each one's
    truth (``soundscape_000.txt``), ``truth.csv`` with every event (``file`` is the WAV's name) and
    ``soundscapes.json`` (what was made from what: seed, split, source, parameters, per-soundscape counts and
    source clips). Built under a temporary name and renamed when complete."""
    out = Path(out_dir)
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not an empty folder; soundscapes need a new one")
    scapes = soundscapes_of_split(data_dir, split, count, duration_s, seed, config=config, params=params)
    manifest = {"seed": seed, "split": split, "source": os.fspath(data_dir), "config": config, "count": count}
    manifest |= {"duration_s": duration_s, "sampling_rate": SR, "parameters": asdict(params)}
    # Per soundscape, its WAV (its truth is the .txt of the same stem), its event counts and its clips.
    manifest["soundscapes"] = [
        {
            "file": f"{scape.name}.wav",
            "counts": event_counts(scape.events, CLASS_NAMES),
            "sources": scape.sources,
        }
        for scape in scapes
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    with staged_path(out) as tmp:
        tmp.mkdir()
        for scape in scapes:
            _write_wav(tmp / f"{scape.name}.wav", scape.waveform)
            (tmp / f"{scape.name}.txt").write_text(events_to_audacity(scape.events), encoding="utf-8")
        truth = events_to_csv({f"{scape.name}.wav": scape.events for scape in scapes})
        (tmp / TRUTH_CSV).write_text(truth, encoding="utf-8")
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out.is_dir():
            out.rmdir()  # empty (checked above); a folder cannot be renamed over it everywhere
        os.replace(tmp, out)
    logger.info("wrote %d soundscapes of %s s to %s", len(scapes), duration_s, out)
    return out


def _read_split(path: Path, split: str, config: str):
    """The split (a ``Dataset`` of a release, an ``IterableDataset`` of an export) and its label names."""
    if _is_exported_dataset(path):
        rows = datasets.load_dataset(str(path), config, split=split, streaming=True)
    else:
        rows = load_vocalsound(path, config=config)[split]
    feature = (rows.features or {}).get("label")
    labels = tuple(feature.names) if isinstance(feature, datasets.ClassLabel) else CLASS_NAMES
    return rows, labels


def _draw_clips(rows, labels, needed: int, generator: torch.Generator, source: str) -> list[tuple]:
    """``needed`` clips (file name, label, active part) in a random order; every clip before any is reused."""
    try:
        total = len(rows)
    except TypeError:  # an IterableDataset knows its size only from its info
        info = (rows.info.splits or {}).get(rows.split)
        total = info.num_examples if info else 0
    if total == 0:
        raise ValueError(f"{source}: the split has no clips to mix")
    if total < needed:
        logger.warning("%s has %d clips for %d events: clips are reused", source, total, needed)
    order = torch.cat([torch.randperm(total, generator=generator) for _ in range(math.ceil(needed / total))])
    order = order[:needed].tolist()
    wanted = sorted(set(order))
    if isinstance(rows, datasets.Dataset):
        rows = rows.select(wanted)
    else:
        chosen = set(wanted)
        rows = rows.filter(lambda _, index: index in chosen, with_indices=True, input_columns="label")
    decoded = {}
    for index, row in zip(wanted, tqdm(decode_as_model_input(rows), total=len(wanted), desc="Reading clips")):
        waveform = decoded_waveform(row["audio"])
        span = active_span(waveform)
        if span is None:
            logger.warning("%s: clip %d is silent and left out", source, index)
            continue
        name = row.get("file_name") or f"clip {index}"
        decoded[index] = (name, labels[row["label"]], waveform[span[0] : span[1]])
    return [decoded[index] for index in order if index in decoded]


def _arrange(lengths, total: int, min_gap: int, share: float, generator: torch.Generator) -> list[int] | None:
    """Start samples of clips of ``lengths``: pairs that overlap, the rest alone; ``None`` if they do not fit."""
    pairs = min(int(share * len(lengths) / 2 + 0.5), len(lengths) // 2)  # half up, not to even
    order = torch.randperm(len(lengths), generator=generator).tolist()
    units = []  # (span, [(clip, its start within the unit)])
    for host, guest in zip(order[:pairs], order[pairs : 2 * pairs]):
        a, b = lengths[host], lengths[guest]
        least = max(1, min(a, b) // 4)
        shift = int(torch.randint(least - b, a - least + 1, (1,), generator=generator))
        first = min(0, shift)
        units.append((max(a, shift + b) - first, [(host, -first), (guest, shift - first)]))
    units += [(lengths[clip], [(clip, 0)]) for clip in order[2 * pairs :]]
    unit_starts = _place([span for span, _ in units], total, min_gap, generator)
    if unit_starts is None:
        return None
    starts = [0] * len(lengths)
    for (_, members), unit_start in zip(units, unit_starts):
        for clip, offset in members:
            starts[clip] = unit_start + offset
    return starts


def _place(lengths: list[int], total: int, min_gap: int, generator: torch.Generator) -> list[int] | None:
    """Random starts of non-overlapping stretches of ``lengths`` in ``[0, total)``, at least ``min_gap``
    apart, in a random order, the free time split at uniform random points; ``None`` if they do not fit."""
    slack = total - sum(lengths) - max(0, len(lengths) - 1) * min_gap
    if slack < 0:
        return None
    order = torch.randperm(len(lengths), generator=generator).tolist()
    points = torch.rand(len(lengths), generator=generator, dtype=torch.float64)
    cuts = sorted((points * slack).long().tolist())
    starts = [0] * len(lengths)
    position, previous = 0, 0
    for rank, (stretch, cut) in enumerate(zip(order, cuts)):
        position += cut - previous + (min_gap if rank else 0)
        starts[stretch] = position
        position += lengths[stretch]
        previous = cut
    return starts


def _silence_envelope(num_samples: int, generator: torch.Generator, params: SoundscapeParams) -> torch.Tensor:
    """The background's gain: 1, and ``10 ** (-silence_drop_db / 20)`` over the near-silent stretches."""
    mean_s = sum(params.silence_s) / 2
    count = round(params.silence_share * num_samples / (mean_s * SR))
    lengths = [max(1, round(_uniform(params.silence_s, generator) * SR)) for _ in range(count)]
    while sum(lengths) > num_samples:
        lengths.pop()
    depth = torch.zeros(num_samples, dtype=torch.float64)
    ramp = round(SILENCE_RAMP_S * SR)
    for start, length in zip(_place(lengths, num_samples, 0, generator) or [], lengths):
        depth[start : start + length] = _faded(torch.ones(length, dtype=torch.float64), ramp)
    return 10 ** (-params.silence_drop_db * depth / 20)


def _faded(segment: torch.Tensor, ramp: int) -> torch.Tensor:
    """``segment`` with linear fades of ``ramp`` samples (at most half its length) in and out."""
    ramp = min(ramp, len(segment) // 2)
    if ramp == 0:
        return segment
    rise = (torch.arange(ramp, dtype=segment.dtype) + 0.5) / ramp
    segment = segment.clone()
    segment[:ramp] *= rise
    segment[-ramp:] *= rise.flip(0)
    return segment


def _uniform(bounds: tuple[float, float], generator: torch.Generator) -> float:
    low, high = bounds
    return low + (high - low) * float(torch.rand(1, generator=generator, dtype=torch.float64))


def _generator(seed: int, *tags) -> torch.Generator:
    """A generator of its own for each use and soundscape of a seed: one soundscape's draws never shift another's."""
    digest = hashlib.sha256(repr((seed, *tags)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _write_wav(path: Path, waveform: torch.Tensor) -> None:
    """16-bit PCM: rounded to the nearest step, which is what a decoder reads back (``sample / 32768``)."""
    pcm = (waveform * 32768).round().clamp(-32768, 32767).to(torch.int16)
    sf.write(path, pcm.numpy(), SR, subtype="PCM_16")
