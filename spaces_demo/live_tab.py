"""The Live tab's components and handlers (the session they drive is ``live.LiveSession``)."""

from __future__ import annotations

import gradio as gr
from figures import events_figure
from live import LIVE_LOOKAHEAD_S, LIVE_TIMELINE_S, MAX_LIVE_EVENTS, LiveSession, status_markdown
from upload import COUNT_HEADERS, EVENT_HEADERS, count_rows, event_rows

from vocalsound_hf.inference.classifier import AudioClassifier

# Seconds of microphone audio per chunk the browser sends (Gradio's ``stream_every``).
LIVE_CHUNK_S = 0.5
# A recording stops after this long; pressing record again starts a new one.
LIVE_TIME_LIMIT_S = 3600
# The timeline and the counts are redrawn when events arrive, otherwise after this much more audio (a
# figure costs CPU).
TIMELINE_REFRESH_S = 2.0


def _view(session: LiveSession, changed: bool) -> tuple:
    """Status, counts, events (newest first) and timeline; the ones not due are skipped (``gr.skip()``)."""
    redraw = changed or session.duration_s - session.drawn_at_s >= TIMELINE_REFRESH_S
    figure = gr.skip()
    if redraw:
        session.drawn_at_s = session.duration_s
        events, start_s, end_s = session.timeline()
        figure = events_figure(
            events, session.classifier.labels, start_s, end_s, f"Last {LIVE_TIMELINE_S / 60:g} minutes"
        )
    return (
        status_markdown(session),
        # The rates per minute change with time: refreshed with the timeline.
        count_rows(session.counts, session.rates()) if redraw else gr.skip(),
        event_rows(session.newest_first()) if changed else gr.skip(),
        figure,
    )


def build_live_tab(classifier: AudioClassifier) -> None:
    """The Live tab's components and events, inside the page's ``gr.Blocks``."""

    def session_of(session: LiveSession | None) -> LiveSession:
        # Created on a session's first event: gr.State deep-copies its initial value, and the session holds
        # the classifier.
        return session if session is not None else LiveSession(classifier)

    def stream(chunk, session: LiveSession | None):
        session = session_of(session)
        if chunk is None:
            return session, *(gr.skip(),) * 4
        sample_rate, data = chunk
        # If the handler falls behind the microphone, Gradio keeps only the newest chunk; the detector then
        # sees the audio with a gap.
        completed = session.push(sample_rate, data)
        return session, *_view(session, changed=bool(completed))

    def restart(session: LiveSession | None):
        session = session_of(session)
        session.reset()
        return session, *_view(session, changed=True)

    def stop(session: LiveSession | None):
        session = session_of(session)
        session.finish()
        return session, *_view(session, changed=True)

    gr.Markdown(
        "Record with the microphone: the audio is classified as it arrives, in the model's windows, and "
        f"events show about {LIVE_LOOKAHEAD_S + classifier.window_s:.0f} s after they end (a window and "
        f"{LIVE_LOOKAHEAD_S:g} s of background to compare them with). Stopping decides the last ones. Each "
        f"recording starts a new count; one lasts at most {LIVE_TIME_LIMIT_S / 60:g} minutes. The table keeps "
        f"the latest {MAX_LIVE_EVENTS} events, the timeline the last {LIVE_TIMELINE_S / 60:g} minutes."
    )
    state = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1):
            microphone = gr.Audio(
                sources=["microphone"], streaming=True, type="numpy", label="Microphone", elem_id="live-audio"
            )
            reset = gr.Button("Reset")
        with gr.Column(scale=1):
            status = gr.Markdown("Press record to start.", elem_id="live-status")
            counts = gr.Dataframe(
                headers=COUNT_HEADERS, label="Running counts", interactive=False, elem_id="live-counts"
            )
    timeline = gr.Plot(label="Running timeline")
    events = gr.Dataframe(
        headers=EVENT_HEADERS, label="Recent events (newest first)", interactive=False, elem_id="live-events"
    )
    outputs = [state, status, counts, events, timeline]
    microphone.stream(
        stream,
        [microphone, state],
        outputs,
        api_name="live",
        stream_every=LIVE_CHUNK_S,
        time_limit=LIVE_TIME_LIMIT_S,
        # No limit on streams at once: a stream holds a concurrency slot for as long as it lasts, even after
        # its tab has gone (Gradio waits for the next chunk up to the time limit), so a limit would lock
        # everyone out for up to an hour. Between chunks a stream costs nothing; each chunk is a few windows.
        concurrency_id="live",
        concurrency_limit=None,
        show_progress="hidden",
    )
    # Start, stop and reset are never queued behind anything.
    control = {"concurrency_id": "live_control", "concurrency_limit": None, "show_progress": "hidden"}
    microphone.start_recording(restart, state, outputs, api_visibility="private", **control)
    microphone.stop_recording(stop, state, outputs, api_name="live_stop", **control)
    reset.click(restart, state, outputs, api_name="live_reset", **control)
