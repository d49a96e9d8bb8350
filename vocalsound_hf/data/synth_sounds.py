"""The sound of a synthetic release: per-speaker voices and the six vocal-sound events.

Every clip is an event (the vocal sound) placed in per-speaker background noise; the six event generators
follow the acoustic shape of the real sounds (laughter's 4-6 Hz bursts, a sigh's long fading exhalation,
a cough's sharp broadband bursts, throat clearing's low rattle, a sneeze's late explosion, a sniff's short
high-passed noise), varied per speaker (voice, vocal tract, room, microphone) and per clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft, signal

from .synth_plan import Clip, Speaker

MAX_CLIP_SECONDS = 8.0

# (F1, F2, F3) in Hz of an adult male voice; other speakers scale them.
_VOWELS = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
    "schwa": (500.0, 1500.0, 2500.0),
}


@dataclass(frozen=True)
class Voice:
    """What stays the same across one speaker's clips: voice, vocal tract, room and microphone."""

    f0: float
    formant_scale: float
    breathiness: float
    snr_db: float
    noise_colour: float
    hum_hz: float
    hum_level: float
    reverb_s: float
    peak_db: float

    @classmethod
    def draw(cls, speaker: Speaker, seed: int) -> Voice:
        rng = np.random.default_rng([seed, 5, speaker.number])
        f0_centre, formant_centre = {"f": (210.0, 1.17), "m": (118.0, 1.0), "o": (160.0, 1.08)}[
            speaker.gender
        ]
        return cls(
            f0=f0_centre * float(np.exp(rng.normal(0, 0.13))),
            formant_scale=formant_centre * float(rng.uniform(0.92, 1.08)),
            breathiness=float(rng.uniform(0.1, 0.6)),
            snr_db=float(rng.uniform(8, 40)),
            noise_colour=float(rng.uniform(0.0, 2.0)),
            hum_hz=float(rng.choice([50.0, 60.0])) if rng.random() < 0.2 else 0.0,
            hum_level=float(rng.uniform(0.3, 2.0)),
            reverb_s=float(rng.uniform(0.05, 0.5)) if rng.random() < 0.5 else 0.0,
            peak_db=float(rng.uniform(-16, -1)),
        )


def synthesise_clip(clip: Clip, voice: Voice, sr: int, seed: int) -> np.ndarray:
    """The clip's float32 audio: its event in silence and the speaker's background noise, at the speaker's level."""
    rng = np.random.default_rng([seed, 6, clip.speaker.number, clip.collection, clip.label])
    event = EVENTS[clip.label](rng, voice, sr)
    if voice.reverb_s:
        event = _reverberate(event, voice.reverb_s, rng, sr)
    # Silence around the event, so clips last about 1 to 8 s like the real ones.
    lead = int(rng.uniform(0.05, 1.2) * sr)
    trail = int(rng.uniform(0.05, 1.5) * sr)
    total = min(max(len(event) + lead + trail, sr), int(MAX_CLIP_SECONDS * sr))
    lead = min(lead, max(total - len(event), 0))
    audio = np.zeros(total)
    audio[lead : lead + len(event)] = event[: total - lead]

    active = np.abs(event) > 0.05 * np.abs(event).max()
    event_rms = np.sqrt(np.mean(event[active] ** 2))
    noise = _coloured_noise(total, np.clip(voice.noise_colour + rng.normal(0, 0.2), 0, 2), rng, sr)
    noise /= np.sqrt(np.mean(noise**2))
    if voice.hum_hz:
        # Mains hum and its third harmonic, as a badly grounded microphone picks up.
        t = np.arange(total) / sr
        noise += voice.hum_level * (
            np.sin(2 * np.pi * voice.hum_hz * t) + 0.4 * np.sin(6 * np.pi * voice.hum_hz * t)
        )
    snr_db = voice.snr_db + rng.normal(0, 3)
    audio += noise / np.sqrt(np.mean(noise**2)) * event_rms * 10 ** (-snr_db / 20)
    peak = 10 ** ((voice.peak_db + rng.normal(0, 2)) / 20)
    return (audio / np.abs(audio).max() * min(peak, 0.95)).astype(np.float32)


def _coloured_noise(n: int, exponent: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent (0 white, 1 pink, 2 brown) above 50 Hz, and is flat below.

    The floor keeps brown noise from turning into a slow drift, as a microphone's rumble filter would.
    """
    # A fast FFT length, cut back to n: the FFT of an awkward (e.g. prime) length is orders slower.
    size = fft.next_fast_len(n, real=True)
    spectrum = fft.rfft(rng.standard_normal(size))
    spectrum *= np.maximum(fft.rfftfreq(size, 1 / sr), 50.0) ** (-exponent / 2)
    spectrum[0] = 0.0
    return fft.irfft(spectrum, size)[:n]


def _reverberate(x: np.ndarray, rt60: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    t = np.arange(int(rt60 * sr)) / sr
    tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60) * 0.15
    tail[0] = 1.0
    return signal.fftconvolve(x, tail)


def _envelope(n: int, sr: int, attack: float, release_: float) -> np.ndarray:
    """Raised-cosine attack and release around a flat top."""
    env = np.ones(n)
    a = min(int(attack * sr), n // 2)
    r = min(int(release_ * sr), n - a)
    if a:
        env[:a] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, a))
    if r:
        env[n - r :] = 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, r))
    return env


def _decay(n: int, sr: int, attack: float, tau: float) -> np.ndarray:
    """A sharp onset followed by an exponential decay: the shape of an explosive release of air."""
    t = np.arange(n) / sr
    return np.minimum(t / attack, 1.0) * np.exp(-np.maximum(t - attack, 0) / tau)


def _voiced(f0: np.ndarray, sr: int, rng: np.random.Generator, jitter: float = 0.01) -> np.ndarray:
    """A glottal-like source (a sawtooth, rich in harmonics) following the pitch track ``f0``, with jitter."""
    wobble = signal.sosfilt(signal.butter(2, 30, fs=sr, output="sos"), rng.standard_normal(len(f0)))
    wobble *= jitter / (np.std(wobble) + 1e-12)
    phase = np.cumsum(f0 * (1 + wobble)) / sr
    return signal.sawtooth(2 * np.pi * phase)


def _formants(x: np.ndarray, vowel: str, voice: Voice, sr: int, bandwidth: float = 1.0) -> np.ndarray:
    """Shape a source by the vocal tract: parallel resonances at the speaker's formants of ``vowel``."""
    out = np.zeros_like(x)
    for gain, freq, bw in zip((1.0, 0.6, 0.3), _VOWELS[vowel], (90.0, 110.0, 160.0)):
        freq *= voice.formant_scale
        if freq < 0.45 * sr:
            b, a = signal.iirpeak(freq, freq / (bw * bandwidth), fs=sr)
            out += gain * signal.lfilter(b, a, x)
    return out


def _filtered_noise(n: int, sr: int, rng: np.random.Generator, btype: str, cutoff) -> np.ndarray:
    sos = signal.butter(4, cutoff, btype=btype, fs=sr, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(n))


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / (np.abs(x).max() + 1e-12)


def _laughter(rng: np.random.Generator, voice: Voice, sr: int) -> np.ndarray:
    """Bouts of voiced "ha" syllables repeating at 4-6 Hz, each opening with a puff of aspiration."""
    rate = rng.uniform(4.0, 6.0)
    vowel = str(rng.choice(["a", "e", "schwa"]))
    bouts = [int(rng.integers(3, 11)) for _ in range(int(rng.integers(1, 3)))]
    onsets, amplitudes, pitches = [], [], []
    t = 0.0
    for count in bouts:
        pitch = voice.f0 * rng.uniform(1.2, 1.8)
        for k in range(count):
            onsets.append(t)
            amplitudes.append(1.0 - 0.5 * k / count)
            pitches.append(pitch * (1 - 0.25 * k / count))
            t += rng.normal(1.0, 0.08) / rate
        t += rng.uniform(0.3, 0.8)
    n = int((t + 0.2) * sr)
    f0 = np.full(n, pitches[0])
    env = np.zeros(n)
    puff = np.zeros(n)
    for onset, amplitude, pitch in zip(onsets, amplitudes, pitches):
        start = int(onset * sr)
        length = int(rng.uniform(0.45, 0.7) / rate * sr)
        end = min(start + length, n)
        f0[start:] = pitch
        env[start:end] += amplitude * np.sin(np.linspace(0, np.pi, end - start)) ** 1.5
        puff[start:end] += amplitude * _decay(end - start, sr, 0.005, 0.03)
    voiced = _formants(_voiced(f0, sr, rng, jitter=0.02), vowel, voice, sr)
    breath = _formants(rng.standard_normal(n), vowel, voice, sr, bandwidth=3.0)
    return _normalised(voiced) * env + (0.3 + voice.breathiness) * _normalised(breath) * puff


def _sigh(rng: np.random.Generator, voice: Voice, sr: int) -> np.ndarray:
    """A long, breathy exhalation falling in pitch and loudness, sometimes after an audible inhalation."""
    parts = []
    if rng.random() < 0.5:
        n = int(rng.uniform(0.4, 0.9) * sr)
        inhale = _filtered_noise(n, sr, rng, "highpass", 1000.0)
        parts.append(0.25 * _normalised(inhale) * np.linspace(0.2, 1.0, n) * _envelope(n, sr, 0.1, 0.05))
        parts.append(np.zeros(int(rng.uniform(0.05, 0.3) * sr)))
    n = int(rng.uniform(1.0, 2.8) * sr)
    t = np.linspace(0, 1, n)
    f0 = voice.f0 * np.linspace(rng.uniform(1.0, 1.3), rng.uniform(0.6, 0.8), n)
    vowel = str(rng.choice(["a", "schwa", "o"]))
    voiced = _normalised(_formants(_voiced(f0, sr, rng, jitter=0.03), vowel, voice, sr))
    breath = _normalised(_formants(rng.standard_normal(n), vowel, voice, sr, bandwidth=4.0))
    voicing = rng.uniform(0.1, 0.5) * (1 - voice.breathiness / 2) * (1 - t)
    env = _envelope(n, sr, rng.uniform(0.1, 0.3), 0.05) * (1 - t) ** rng.uniform(1.0, 2.0)
    parts.append((breath + voicing * voiced) * env)
    return np.concatenate(parts)


def _cough(rng: np.random.Generator, voice: Voice, sr: int) -> np.ndarray:
    """One to three sharp broadband bursts with fast decay, each trailing off into a short voiced part."""
    parts = []
    for k in range(int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))):
        n = int(rng.uniform(0.2, 0.4) * sr)
        burst = rng.standard_normal(n) + 2.0 * _normalised(
            _formants(rng.standard_normal(n), "a", voice, sr, 3.0)
        )
        burst *= _decay(n, sr, rng.uniform(0.002, 0.008), rng.uniform(0.03, 0.08))
        m = int(rng.uniform(0.08, 0.2) * sr)
        tail = _formants(
            _voiced(np.full(m, voice.f0 * rng.uniform(0.9, 1.4)), sr, rng, 0.05), "schwa", voice, sr
        )
        tail = 0.3 * _normalised(tail) * _envelope(m, sr, 0.01, m / sr / 2)
        offset = int(rng.uniform(0.02, 0.06) * sr)
        burst[offset : offset + m] += tail[: n - offset]
        parts += [_normalised(burst) * 0.85**k, np.zeros(int(rng.uniform(0.1, 0.4) * sr))]
    return np.concatenate(parts[:-1])


def _throat_clearing(rng: np.random.Generator, voice: Voice, sr: int) -> np.ndarray:
    """Low, rough noise amplitude-modulated at 15-40 Hz (the rattle), in one or two pushes ("a-hem")."""
    parts = []
    for _ in range(int(rng.integers(1, 3))):
        n = int(rng.uniform(0.3, 0.9) * sr)
        t = np.arange(n) / sr
        rattle = 1 - rng.uniform(0.5, 0.9) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(15, 40) * t))
        noise = _normalised(_filtered_noise(n, sr, rng, "lowpass", rng.uniform(250, 700)))
        f0 = np.full(n, max(60.0, voice.f0 * rng.uniform(0.5, 0.8)))
        growl = _formants(_voiced(f0, sr, rng, jitter=0.08), "schwa", voice, sr)
        growl = _normalised(signal.sosfilt(signal.butter(2, 1500, fs=sr, output="sos"), growl))
        mix = noise + rng.uniform(0.2, 0.8) * growl
        parts += [
            mix * rattle * _envelope(n, sr, rng.uniform(0.03, 0.1), 0.1),
            np.zeros(int(rng.uniform(0.05, 0.25) * sr)),
        ]
    return np.concatenate(parts[:-1])


def _sneeze(rng: np.random.Generator, voice: Voice, sr: int) -> np.ndarray:
    """A rising, voiced inhalation ("ah-ah") then an explosive high-frequency burst ("choo")."""
    n = int(rng.uniform(0.3, 1.0) * sr)
    ramp = np.linspace(0, 1, n)
    f0 = voice.f0 * (1.0 + rng.uniform(0.3, 0.7) * ramp)
    inhale = _normalised(_formants(_voiced(f0, sr, rng, 0.02), "a", voice, sr))
    inhale += voice.breathiness * _normalised(_filtered_noise(n, sr, rng, "highpass", 800.0))
    inhale *= (0.15 + 0.45 * ramp) * _envelope(n, sr, 0.05, 0.03)
    gap = np.zeros(int(rng.uniform(0.03, 0.2) * sr))
    m = int(rng.uniform(0.4, 0.8) * sr)
    burst = _normalised(_filtered_noise(m, sr, rng, "highpass", rng.uniform(1500, 3500)))
    burst += 0.4 * _normalised(_formants(rng.standard_normal(m), str(rng.choice(["u", "i"])), voice, sr, 3.0))
    burst *= _decay(m, sr, rng.uniform(0.004, 0.012), rng.uniform(0.08, 0.2))
    return np.concatenate([_normalised(inhale) * 0.5, gap, _normalised(burst)])


def _sniff(rng: np.random.Generator, voice: Voice, sr: int) -> np.ndarray:
    """One to three short, high-passed bursts of noise: air drawn quickly through the nose."""
    parts = []
    for _ in range(int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))):
        n = int(rng.uniform(0.1, 0.3) * sr)
        noise = _filtered_noise(n, sr, rng, "highpass", rng.uniform(1200, 3000))
        nasal = signal.lfilter(*signal.iirpeak(rng.uniform(2000, 5000), 4.0, fs=sr), rng.standard_normal(n))
        burst = _normalised(noise) + 0.5 * _normalised(nasal)
        parts += [burst * np.hanning(n) ** 0.7, np.zeros(int(rng.uniform(0.15, 0.5) * sr))]
    return np.concatenate(parts[:-1])


# Indexed like release.CLASS_TOKENS: the event generator of each label.
EVENTS = (_laughter, _sigh, _cough, _throat_clearing, _sneeze, _sniff)
