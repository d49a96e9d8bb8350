"""The Space's Live tab: the microphone chunk path (``spaces_demo/live.py``), its bounded session state, the
stream endpoint driven as the browser drives it, and headless Chromium with a fake microphone."""

from __future__ import annotations

import json
import re
import sys
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import soxr
import test_demo
import torch
from test_demo import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, SR, _recording, open_page

from vocalsound_hf.audio import decoded_waveform, open_decoder
from vocalsound_hf.inference.detection import DetectionThresholds, StreamingDetector
from vocalsound_hf.release import CLASS_NAMES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spaces_demo"))
from live import (  # noqa: E402
    LIVE_LOOKAHEAD_S,
    LIVE_TIMELINE_S,
    MAX_LIVE_EVENTS,
    LiveSession,
    to_mono,
)

COUGH = CLASS_NAMES.index("Cough")
# The Space's server and model, as test_demo starts them (a server of this module's own).
event_model_dir = test_demo.event_model_dir
fast_classifier = test_demo.fast_classifier
server = test_demo.server


def test_stereo_chunks_are_mixed_as_the_file_decoder_mixes_them(tmp_path):
    """FFmpeg's mono of stereo is (L + R) / sqrt(2); an int16 chunk is scaled by 1 / 32768."""
    rng = np.random.default_rng(0)
    stereo = (8000 * rng.standard_normal((SR, 2))).clip(-32768, 32767).astype(np.int16)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, SR, subtype="PCM_16")
    decoded = decoded_waveform(open_decoder(str(path), SR))
    torch.testing.assert_close(to_mono(stereo), decoded, atol=1e-6, rtol=0)
    assert to_mono(stereo[:, 0]).tolist() == (stereo[:, 0] / 32768).astype(np.float32).tolist()
    assert to_mono(stereo.astype(np.float32) / 32768).allclose(decoded, atol=1e-6)


@pytest.mark.parametrize("rate", [48_000, 44_100, 22_050, 8_000])
def test_microphone_chunks_resample_as_the_whole_stream_would(rate):
    """No clicks at chunk edges: chunks of any size reach the detector as the whole recording resampled."""
    generator = torch.Generator().manual_seed(rate)
    stream = (0.1 * torch.randn(2 * rate, generator=generator)).numpy()
    session = LiveSession(LoudIsCough())
    received = []
    session.detector.push = lambda samples: received.append(samples) or []
    start = 0
    for size in torch.randint(1, rate // 2, (100,), generator=generator).tolist():
        session.push(rate, stream[start : start + size])
        start += size
        if start >= stream.size:
            break
    out = torch.cat(received).numpy()
    whole = soxr.resample(stream, rate, SR, quality="HQ")
    # All but the resampler's delay at the end (well under 0.1 s) has reached the detector, unchanged.
    assert whole.size - SR // 10 <= out.size <= whole.size
    np.testing.assert_allclose(out, whole[: out.size], atol=1e-6)


class LoudIsCough:
    """A stand-in classifier as cheap as arithmetic: a window whose peak passes 0.05 is a Cough (probability
    1), any other window is undecided (1/6 each). Windows of 2 s, so an hour is quick to stream."""

    sampling_rate = SR
    window_samples = 2 * SR
    window_s = 2.0
    labels = list(CLASS_NAMES)
    detection_thresholds = DetectionThresholds()

    def log_mel(self, padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return padded

    def probabilities(self, windows: torch.Tensor) -> torch.Tensor:
        scores = torch.full((windows.shape[0], len(self.labels)), 1 / len(self.labels))
        loud = windows.abs().amax(dim=1) > 0.05
        scores[loud] = torch.nn.functional.one_hot(torch.tensor(COUGH), len(self.labels)).float()
        return scores


@pytest.fixture
def one_thread():
    """Small tensors, many calls: one thread avoids the thread pool's overhead (and a busy machine's)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _burst_chunk(second: int, rng: np.random.Generator) -> np.ndarray:
    """One second of int16 microphone audio: a faint floor, and a 0.4 s burst every fifth second."""
    chunk = 0.002 * rng.standard_normal(SR)
    if second % 5 == 2:
        chunk[: int(0.4 * SR)] += 0.3 * rng.standard_normal(int(0.4 * SR))
    return (chunk * 32768).clip(-32768, 32767).astype(np.int16)


def test_an_hour_of_microphone_keeps_the_session_bounded(one_thread):
    """An hour streamed in one-second chunks: every burst is counted, yet the session keeps at most
    MAX_LIVE_EVENTS events, the detector about a window of audio, the tracker a context of segments."""
    rng = np.random.default_rng(0)
    session = LiveSession(LoudIsCough())
    detector = session.detector
    largest = {"buffer": 0, "levels": 0, "undecided": 0}
    for second in range(3600):
        session.push(SR, _burst_chunk(second, rng))
        tracker = detector.tracker
        largest["buffer"] = max(largest["buffer"], detector._buffer.numel())
        largest["levels"] = max(largest["levels"], len(tracker._levels))
        largest["undecided"] = max(largest["undecided"], len(tracker._sums))
    session.finish()
    assert session.duration_s == 3600
    assert session.counts["Cough"] == 720 and sum(session.counts.values()) == 720
    assert len(session.recent) == MAX_LIVE_EVENTS
    newest = session.newest_first()
    assert newest[0].onset_s == pytest.approx(3597, abs=0.5) and newest[0].onset_s > newest[-1].onset_s
    shown, start_s, end_s = session.timeline()
    assert (start_s, end_s) == (3600 - LIVE_TIMELINE_S, 3600) and len(shown) == LIVE_TIMELINE_S // 5
    # What would grow with the recording if anything did: bounded by a window plus a chunk of audio, and
    # the background context (15 s either side) of segments.
    hop_s = detector.hop_s
    assert largest["buffer"] <= detector.window + SR
    assert largest["levels"] <= 2 * 15 / hop_s + SR / detector.hop + 2
    assert largest["undecided"] <= (LIVE_LOOKAHEAD_S + 1 + detector.window / SR) / hop_s + 2
    assert session.rates()["Cough"] == pytest.approx(12.0)


def test_reset_clears_the_session_and_a_stopped_one_ignores_late_chunks(one_thread):
    rng = np.random.default_rng(1)
    session = LiveSession(LoudIsCough())
    for second in range(20):
        session.push(SR, _burst_chunk(second, rng))
    session.finish()
    counted = dict(session.counts)
    assert counted["Cough"] == 4
    session.push(SR, _burst_chunk(2, rng))  # a chunk that arrives after stop
    assert session.counts == counted and session.duration_s == 20
    session.reset()
    assert session.duration_s == 0 and sum(session.counts.values()) == 0 and not session.recent
    session.push(48_000, np.repeat(_burst_chunk(2, rng), 3))  # 48 kHz after a reset: a fresh resampler
    # A second of audio, less what the resampler holds back (its filter delay, ~20 ms).
    assert session.resampler_rate == 48_000 and 0.95 < session.duration_s <= 1


# The stream endpoint, driven as the browser drives it.


def _chunk_files(recording: Path, tmp_path: Path, chunk_s: float = 0.5) -> list[tuple[Path, np.ndarray]]:
    """The recording as the browser sends a microphone: int16 WAVs of ``chunk_s`` each."""
    samples, sr = sf.read(recording, dtype="int16")
    size = round(chunk_s * sr)
    chunks = []
    for i, start in enumerate(range(0, len(samples), size)):
        path = tmp_path / f"chunk_{i:04d}.wav"
        sf.write(path, samples[start : start + size], sr, subtype="PCM_16")
        chunks.append((path, samples[start : start + size]))
    return chunks


class StreamingPage:
    """One browser session of the Space, speaking Gradio's queue protocol over HTTP.

    ``gradio_client`` cannot send a streaming input (it has no client for ``/gradio_api/stream/``), so this
    does what the page's JavaScript does: join the queue with the first chunk, then post each next chunk to
    ``/gradio_api/stream/{event_id}`` once the previous one's outputs arrived, then close the stream.
    """

    def __init__(self, url: str):
        self.url = url
        self.session_hash = uuid.uuid4().hex[:11]
        self.http = httpx.Client(timeout=120)
        config = self.http.get(f"{url}config").json()
        self.components = {c["id"]: c for c in config["components"]}
        self.dependencies = {d.get("api_name"): d for d in config["dependencies"]}

    def element(self, elem_id: str) -> int:
        return next(i for i, c in self.components.items() if c.get("props", {}).get("elem_id") == elem_id)

    def _body(self, api_name: str, data: list) -> dict:
        dependency = self.dependencies[api_name]
        return {
            "data": data,
            "event_data": None,
            "fn_index": dependency["id"],
            "trigger_id": dependency["targets"][0][0],
            "session_hash": self.session_hash,
        }

    def upload(self, path: Path) -> dict:
        response = self.http.post(
            f"{self.url}gradio_api/upload", files={"files": (path.name, path.read_bytes())}
        )
        response.raise_for_status()
        return {"path": response.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def run(self, api_name: str, chunks: list[Path]) -> list[dict]:
        """Join ``api_name`` (a stream with ``chunks``, or a plain event with none); the outputs of every
        message, by component id, in order."""
        inputs = [self.upload(chunks[0])] if chunks else []
        state = [None]  # the session's gr.State: the server holds it, the page sends a placeholder
        join = self.http.post(f"{self.url}gradio_api/queue/join", json=self._body(api_name, inputs + state))
        join.raise_for_status()
        event_id = join.json()["event_id"]
        outputs_ids = self.dependencies[api_name]["outputs"]
        results, sent = [], 1
        url = f"{self.url}gradio_api/queue/data?session_hash={self.session_hash}"
        with self.http.stream("GET", url) as messages:
            for line in messages.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") not in (None, event_id):
                    continue
                if message["msg"] in ("process_streaming", "process_completed"):
                    assert message.get("success", True), message
                    results.append(dict(zip(outputs_ids, message["output"]["data"])))
                if message["msg"] == "process_completed":
                    break
                if message["msg"] == "process_streaming":
                    if sent < len(chunks):
                        body = self._body(api_name, [self.upload(chunks[sent]), None])
                        self.http.post(
                            f"{self.url}gradio_api/stream/{event_id}", json=body
                        ).raise_for_status()
                        sent += 1
                    else:
                        self.http.post(f"{self.url}gradio_api/stream/{event_id}/close").raise_for_status()
        assert sent == len(chunks) or not chunks
        return results


def _latest(results: list[dict], component: int):
    """The component's last value that was not skipped (``gr.skip()`` sends an empty update)."""
    values = [
        r[component] for r in results if not (isinstance(r[component], dict) and r[component].get("__type__"))
    ]
    return values[-1]


def _counts(events, labels) -> list[list]:
    counts = dict.fromkeys(labels, 0)
    for event in events:
        counts[event.label] += 1
    return counts


@pytest.mark.slow
def test_the_live_stream_counts_what_a_detector_fed_the_same_chunks_counts(
    server, fast_classifier, synth_release, tmp_path
):
    recording = _recording(tmp_path / "live.wav", synth_release, clips=3)
    chunks = _chunk_files(recording, tmp_path)
    reference = StreamingDetector(
        fast_classifier, fast_classifier.detection_thresholds, lookahead_s=LIVE_LOOKAHEAD_S
    )
    expected = []
    for _path, samples in chunks:
        expected += reference.push(torch.from_numpy(samples.astype(np.float32) / 32768))
    assert expected, "the recording should give events before it ends"

    page = StreamingPage(server[0])
    counts_id, events_id, status_id = (page.element(e) for e in ("live-counts", "live-events", "live-status"))
    streamed = page.run("live", [path for path, _samples in chunks])
    assert len(streamed) == len(chunks) + 1  # one answer per chunk, then the stream's close
    counts = {row[0]: row[1] for row in _latest(streamed, counts_id)["data"]}
    assert counts == _counts(expected, fast_classifier.labels)
    rows = _latest(streamed, events_id)["data"]
    assert rows == [
        [e.to_dict()[k] for k in ("label", "onset_s", "offset_s", "confidence")] for e in reversed(expected)
    ]
    duration = len(sf.read(recording)[0]) / SR
    assert f"{int(duration) // 60}:{int(duration) % 60:02d} heard" in streamed[-1][status_id]
    assert f"events {len(expected)}" in streamed[-1][status_id]

    # Stop decides what the lookahead still held; Reset clears the session.
    expected += reference.finish()
    [stopped] = page.run("live_stop", [])
    counts = {row[0]: row[1] for row in stopped[counts_id]["data"]}
    assert counts == _counts(expected, fast_classifier.labels)
    assert "**Stopped**" in stopped[status_id] and f"events {len(expected)}" in stopped[status_id]
    [cleared] = page.run("live_reset", [])
    assert cleared[events_id]["data"] in ([], [[None] * 4], [["", "", "", ""]])
    assert "0:00 heard" in cleared[status_id] and "events 0" in cleared[status_id]


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_browser_live_tab_with_a_fake_microphone(server, synth_release, tmp_path):
    """Chromium's fake microphone plays a WAV of vocal sounds between faint noise: the Live tab counts events."""
    from playwright.sync_api import expect, sync_playwright

    microphone = _recording(tmp_path / "microphone.wav", synth_release, clips=4, gap_s=1.5, seed=1)
    args = [
        *CHROMIUM_ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "demo_live.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = open_page(browser, server[0])
            page.get_by_role("tab", name="Live").click()
            page.locator("#live-audio").get_by_role("button", name="Record").click()
            status = page.locator("#live-status")
            expect(status).to_contain_text("Listening", timeout=60_000)
            # At least one event, counted in the status line and listed in the table.
            expect(status).to_contain_text(re.compile(r"events [1-9]"), timeout=90_000)
            page.locator("#live-audio").get_by_role("button", name="Stop").click()
            expect(status).to_contain_text("Stopped", timeout=60_000)
            expect(page.locator("#live-events")).to_contain_text(re.compile("|".join(CLASS_NAMES)))
            page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
