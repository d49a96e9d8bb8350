"""The Space (``spaces_demo/app.py``) as a real server in a subprocess, met by an API client and a browser.

The browser test drives Debian's ``chromium`` with Playwright and saves screenshots under ``artifacts/``.
The server runs the tiny random model with a ``detection.json`` that keeps every loud segment
(``min_confidence`` 0), so a random model still finds events; the tests compare the page with the library on
the same input rather than expecting classes.
"""

from __future__ import annotations

import importlib
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from conftest import converted_audioset_dir

from vocalsound_hf.events import Event, events_from_audacity, events_from_csv
from vocalsound_hf.inference.classifier import AudioClassifier, ModelLoadError
from vocalsound_hf.inference.detection import DetectionThresholds
from vocalsound_hf.models.presets import AUDIOSET_AST
from vocalsound_hf.release import CLASS_NAMES

REPO_ROOT = Path(__file__).resolve().parents[1]
APP = REPO_ROOT / "spaces_demo" / "app.py"
ARTIFACTS = REPO_ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
# What Gradio prints once its server answers, e.g. "* Running on local URL:  http://127.0.0.1:7860".
LOCAL_URL = re.compile(r"Running on local URL:\s+(\S+)")
STARTUP_TIMEOUT_S = 300
SR = 16_000
# Keeps Chromium from reaching anything but the local server.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **extra}
    # Without a port Gradio takes the first one from 7860 up that its server binds, so no port is chosen here
    # that another process could take before the server binds it.
    env.pop("GRADIO_SERVER_PORT", None)
    return env


def _read_url(stdout, log: Path, urls: queue.SimpleQueue) -> None:
    """Copy the server's stdout to ``log``; put the URL it prints once it serves, or ``None`` when it exits."""
    # Append mode, as the server's own stderr writes the same file.
    with log.open("a") as out:
        for line in stdout:
            out.write(line)
            out.flush()
            if found := LOCAL_URL.search(line):
                urls.put(found.group(1).rstrip("/") + "/")
    urls.put(None)


def _clip(path: Path, seconds: float, sr: int = SR, seed: int = 0) -> Path:
    """Noise bursts on a quiet floor: a deterministic clip the model can chew on."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sr)
    envelope = (np.sin(np.linspace(0, 6 * np.pi, n)) > 0.5) + 0.05
    sf.write(path, (0.2 * envelope * rng.standard_normal(n)).astype(np.float32), sr)
    return path


# What the Space's model directory says about detection: every loud segment is an event, whatever its score.
EVENT_THRESHOLDS = DetectionThresholds(min_confidence=0.0, activity_db=6.0, merge_gap_s=0.5)


def _recording(path: Path, release: Path, clips: int = 3, gap_s: float = 2.0, seed: int = 0) -> Path:
    """Clips of the synthetic release with ``gap_s`` of faint noise before, between and after them."""
    rng = np.random.default_rng(seed)
    parts = []
    for clip in sorted((release / "audio_16k").glob("*.wav"))[:clips]:
        samples, sr = sf.read(clip, dtype="float32")
        assert sr == SR
        parts += [0.002 * rng.standard_normal(round(gap_s * SR)).astype(np.float32), samples]
    parts.append(0.002 * rng.standard_normal(round(gap_s * SR)).astype(np.float32))
    sf.write(path, np.concatenate(parts), SR)
    return path


@pytest.fixture(scope="module")
def event_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with ``EVENT_THRESHOLDS`` as its ``detection.json``."""
    model = tmp_path_factory.mktemp("event_model") / "model"
    shutil.copytree(tiny_model_dir, model)
    EVENT_THRESHOLDS.save(model / "detection.json", purpose="tests: every loud segment is an event")
    return model


def _start_server(args: list[str], env: dict[str, str], log: Path):
    """``python spaces_demo/app.py ARGS`` until it serves: the process, its URL and its stdout reader (the test
    fails if it exits or hangs first)."""
    # Its log messages (stderr) go straight to the file, so a test reads them as soon as a request is answered;
    # stdout, where Gradio prints the URL, is read here.
    with log.open("a") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(APP), *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    urls = queue.SimpleQueue()
    reader = threading.Thread(target=_read_url, args=(process.stdout, log, urls), daemon=True)
    reader.start()
    # Gradio prints the URL once its server has started. The timeout only guards against a hung start.
    try:
        url = urls.get(timeout=STARTUP_TIMEOUT_S)
    except queue.Empty:
        _stop(process, reader)
        pytest.fail(f"the app printed no URL within {STARTUP_TIMEOUT_S} s:\n{log.read_text()}")
    if url is None:
        process.wait()
        pytest.fail(f"the app exited with {process.returncode}:\n{log.read_text()}")
    return process, url, reader


def _stop(process: subprocess.Popen, reader: threading.Thread) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)
    reader.join(timeout=15)


@pytest.fixture(scope="module")
def server(event_model_dir, tmp_path_factory):
    """``python spaces_demo/app.py MODEL`` on a port Gradio finds free; yields its URL and log file, and always
    stops it."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    # The model comes from argv; a bogus VOCALSOUND_MODEL shows that argv wins over it.
    env = _env(VOCALSOUND_MODEL="/nonexistent/model", PYTHONUNBUFFERED="1")
    process, url, reader = _start_server([str(event_model_dir)], env, log)
    try:
        assert httpx.get(url, timeout=30).status_code == 200
        yield url, log
    finally:
        _stop(process, reader)


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[0], verbose=False)


@pytest.fixture(scope="module")
def fast_classifier(event_model_dir) -> AudioClassifier:
    # The Space runs the fast path unless VOCALSOUND_FAST=0.
    classifier = AudioClassifier.from_pretrained(event_model_dir, fast=True)
    assert classifier.detection_thresholds == EVENT_THRESHOLDS
    return classifier


def _confidences(label_output: dict) -> dict[str, float]:
    return {row["label"]: row["confidence"] for row in label_output["confidences"]}


@pytest.mark.slow
def test_classify_endpoint_returns_six_probabilities(client, fast_classifier, server, tmp_path):
    from gradio_client import handle_file

    clip = _clip(tmp_path / "clip.wav", 1.0)
    label, spectrogram, info, _timeline, table, events, *_ = client.predict(
        handle_file(str(clip)), api_name="/classify"
    )
    confidences = _confidences(label)
    assert set(confidences) == set(CLASS_NAMES)
    assert sum(confidences.values()) == pytest.approx(1, abs=1e-4)
    # The page shows what the library computes.
    expected = fast_classifier.classify(clip).probabilities
    assert confidences == pytest.approx(expected, abs=1e-5)
    assert label["label"] == max(expected, key=expected.get)
    assert "**Duration** 1.00 s" in info and "prediction took" in info
    assert spectrogram is not None
    assert [row[2] for row in table["data"]] == [label["label"]]
    # A clip of one window is one event: its label, over its whole length.
    [[event_label, onset, offset, confidence]] = events["data"]
    assert (event_label, onset, offset) == (label["label"], 0.0, 1.0)
    assert confidence == pytest.approx(expected[label["label"]], abs=1e-3)


@pytest.mark.slow
def test_long_recording_gets_a_window_table(client, fast_classifier, tmp_path):
    from gradio_client import handle_file

    recording = _clip(tmp_path / "long.flac", 4.0, sr=44_100)
    _label, _spectrogram, info, _timeline, table, *_ = client.predict(
        handle_file(str(recording)), api_name="/classify"
    )
    expected = fast_classifier.classify(recording)
    rows = table["data"]
    assert len(rows) == len(expected.windows) > 1
    assert [row[0] for row in rows] == [round(w.start_s, 2) for w in expected.windows]
    assert [row[2] for row in rows] == [w.label for w in expected.windows]
    assert f"{len(rows)} windows of" in info


@pytest.mark.slow
def test_long_recording_gets_events_counts_and_downloads(
    client, server, fast_classifier, synth_release, tmp_path
):
    from gradio_client import handle_file

    recording = _recording(tmp_path / "three_clips.wav", synth_release)
    outputs = client.predict(handle_file(str(recording)), api_name="/classify")
    _label, _spectrogram, info, timeline, _windows, events, counts, csv_file, labels_file = outputs
    expected = fast_classifier.detect(recording)
    assert len(expected.events) >= 3
    # The table is the library's events, rounded as in the CSV.
    assert events["headers"] == ["label", "onset_s", "offset_s", "confidence"]
    want = [
        [e["label"], e["onset_s"], e["offset_s"], e["confidence"]]
        for e in map(Event.to_dict, expected.events)
    ]
    assert events["data"] == want
    rates = expected.rate_per_minute()
    assert counts["data"] == [[label, n, round(rates[label], 2)] for label, n in expected.counts().items()]
    assert f"**Events** {len(expected.events)}" in info
    assert timeline is not None
    # The downloads parse back to the same events: the CSV with its file name, Audacity's as start, end, label.
    csv_name, csv_text = _download(server[0], csv_file)
    assert csv_name == "three_clips_events.csv"
    assert events_from_csv(csv_text) == {"three_clips.wav": [_rounded(e) for e in expected.events]}
    labels_name, labels_text = _download(server[0], labels_file)
    assert labels_name == "three_clips_labels.txt"
    assert all(len(line.split("\t")) == 3 for line in labels_text.splitlines())
    assert events_from_audacity(labels_text) == [
        Event(e.label, round(e.onset_s, 3), round(e.offset_s, 3)) for e in expected.events
    ]


def _download(url: str, button: dict) -> tuple[str, str]:
    """The name and text of a download button's file, fetched from the server as a browser does."""
    assert button["visible"] is True
    path = button["value"]["path"] if isinstance(button["value"], dict) else button["value"]
    response = httpx.get(f"{url}gradio_api/file={path}", timeout=30)
    assert response.status_code == 200
    return Path(path).name, response.text


def _rounded(event: Event) -> Event:
    return Event(**event.to_dict())


@pytest.mark.slow
def test_bad_files_get_a_message_and_the_next_request_works(client, server, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = tmp_path / "bad.wav"
    bad.write_text("not audio at all\n" * 20)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR, np.float32), SR)
    three_minutes = tmp_path / "three_minutes.flac"
    sf.write(three_minutes, np.zeros(180 * 8000, np.int16), 8000)
    expected = {
        bad: "not a readable audio file",
        silent: "the recording is silent",
        three_minutes: "3.0 min is longer than the limit of 2 min",
    }
    for path, message in expected.items():
        with pytest.raises(AppError, match=f"Cannot classify this audio: {message}"):
            client.predict(handle_file(str(path)), api_name="/classify")
        good = client.predict(handle_file(str(_clip(tmp_path / "good.wav", 1.0))), api_name="/classify")
        assert sum(_confidences(good[0]).values()) == pytest.approx(1, abs=1e-4)
    log = server[1].read_text()
    assert "rejected bad.wav: not a readable audio file" in log
    assert "Traceback" not in log


@pytest.mark.slow
def test_uploads_over_the_size_limit_are_refused(server, tmp_path):
    big = tmp_path / "big.wav"
    with big.open("wb") as out:
        out.truncate(51 * 2**20)
    with big.open("rb") as data:
        response = httpx.post(f"{server[0]}gradio_api/upload", files={"files": ("big.wav", data)}, timeout=60)
    assert response.status_code == 413
    assert "maximum allowed size" in response.text


@pytest.mark.slow
def test_missing_model_exits_with_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(APP)],
        cwd=REPO_ROOT,
        env=_env(VOCALSOUND_MODEL=str(tmp_path / "no_model")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cannot load the model '{tmp_path / 'no_model'}'")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_an_audioset_model_is_announced_as_zero_shot(tmp_path_factory, tmp_path):
    """The synthetic AudioSet checkpoint, converted to a local directory, stands in for the Hub's AudioSet AST:
    set as VOCALSOUND_MODEL, the page says zero-shot and classifies into the six classes."""
    from gradio_client import Client, handle_file

    model = converted_audioset_dir(tmp_path_factory, 16)
    log = tmp_path / "server.log"
    process, url, reader = _start_server([], _env(VOCALSOUND_MODEL=str(model), PYTHONUNBUFFERED="1"), log)
    try:
        config = httpx.get(f"{url}config", timeout=30).json()
        header = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "header")
        text = header["props"]["value"]
        assert "Zero-shot model" in text and str(model) in text
        assert "not fine-tuned on VocalSound" in text and "VOCALSOUND_MODEL" in text
        label, *_ = Client(url, verbose=False).predict(
            handle_file(str(_clip(tmp_path / "clip.wav", 1.0))), api_name="/classify"
        )
        assert set(_confidences(label)) == set(CLASS_NAMES)
    finally:
        _stop(process, reader)
    assert "zero-shot" in log.read_text()


@pytest.mark.slow
def test_a_fine_tuned_model_is_not_called_zero_shot(server):
    config = httpx.get(f"{server[0]}config", timeout=30).json()
    header = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "header")
    assert "fine-tuned on [VocalSound]" in header["props"]["value"]
    assert "zero-shot" not in header["props"]["value"].lower()


def test_the_default_model_is_the_audioset_ast(monkeypatch):
    """With no VOCALSOUND_MODEL and no argument the Space loads the AudioSet AST (the loader is stubbed: no
    network)."""
    monkeypatch.syspath_prepend(str(APP.parent))
    app = importlib.import_module("app")
    monkeypatch.delenv("VOCALSOUND_MODEL", raising=False)
    asked = []

    def refuse(name, fast):
        asked.append(name)
        raise ModelLoadError(name, "not loaded in this test")

    monkeypatch.setattr(app.AudioClassifier, "from_pretrained", refuse)
    with pytest.raises(SystemExit, match="not loaded in this test"):
        app.main([])
    assert asked == [AUDIOSET_AST] and app.DEFAULT_MODEL == AUDIOSET_AST


def open_page(browser, url: str):
    """The Space's page in a new browser tab, once its header shows."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    # Not "networkidle": the page's session state keeps a heartbeat connection open.
    page.goto(url, wait_until="load")
    expect(page.locator("#header")).to_contain_text("VocalSound", timeout=60_000)
    return page


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_browser_upload_shows_the_label_and_errors(server, fast_classifier, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    bad = tmp_path / "not_audio.wav"
    bad.write_text("not audio at all\n" * 20)
    good = _clip(tmp_path / "good.wav", 1.0, seed=3)
    top = fast_classifier.classify(good).label
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = open_page(browser, server[0])
            page.set_input_files("input[type=file]", str(bad))
            expect(page.get_by_text("Cannot classify this audio: not a readable audio file")).to_be_visible(
                timeout=60_000
            )
            page.screenshot(path=ARTIFACTS / "demo_bad_file.png", full_page=True)
            # After an upload the file input is gone until the Audio component is cleared.
            page.get_by_role("button", name="Clear").first.click()
            page.set_input_files("input[type=file]", str(good))
            expect(page.get_by_test_id("label-output-value")).to_have_text(top, timeout=60_000)
            shot = ARTIFACTS / "demo_label.png"
            page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()
    print(f"screenshots: {shot} and {ARTIFACTS / 'demo_bad_file.png'}")
    assert shot.stat().st_size > 10_000


def test_space_folder_is_complete():
    space = REPO_ROOT / "spaces_demo"
    readme = (space / "README.md").read_text()
    front_matter = readme.split("---")[1]
    for key in ("title:", "sdk: gradio", "app_file: app.py", "short_description:", "license:"):
        assert key in front_matter, key
    assert "VOCALSOUND_MODEL" in readme
    requirements = (space / "requirements.txt").read_text()
    assert "vocalsound-hf" in requirements and "gradio" in requirements
    examples = sorted((space / "examples").glob("*.wav"))
    assert 3 <= len(examples) <= 6
    for example in examples:
        info = sf.info(example)
        assert info.samplerate == SR and info.duration <= 10 and example.stat().st_size < 400_000
    # torchcodec decodes through FFmpeg's shared libraries, which the Space installs from packages.txt.
    assert "ffmpeg" in (space / "packages.txt").read_text().split()
