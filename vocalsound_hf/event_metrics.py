"""Scores of detected sound events against the truth: event-based F1 (sed_eval) and count error.

F1 is DCASE's event-based F-score, computed by sed_eval's ``EventBasedMetrics``: a detection matches a truth
event of its class when its onset is within ``onset_collar_s`` of the truth's and its offset within
``max(onset_collar_s, offset_length_share x the truth's length)`` of the truth's offset; each event matches
at most one other (an optimal bipartite matching). ``f1`` counts every event of every recording together
(micro: sed_eval's 'overall'), ``macro_f1`` is the mean of the classes' F1. Count error is what a user of
the counts sees: per class, the mean over recordings of |detected - true| events, and its sum over classes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from .events import Event, event_counts
from .release import CLASS_NAMES

with warnings.catch_warnings():
    # dcase_util, which sed_eval reads events with, imports pkg_resources, whose import warns that it is
    # deprecated: a warning about a dependency's dependency that a user can do nothing about.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    try:
        import sed_eval
    except ImportError as err:
        raise ImportError(
            f"scoring events needs sed_eval ({err}): pip install 'vocalsound-hf[events]'"
        ) from err

# The detector scores a window every hop of about 0.3 s, so its onsets are a hop apart at best: DCASE's default
# 200 ms onset collar would count a detection one hop early or late as missed. 0.5 s is a hop and a half.
ONSET_COLLAR_S = 0.5
# An offset may miss by half the event's length (DCASE's default), or by the collar for a short event: an
# event fades out, so where it ends is less well defined than where it starts.
OFFSET_LENGTH_SHARE = 0.5


@dataclass(frozen=True)
class EventScores:
    """Event-based scores of a set of recordings (NaN where there was nothing to score: see ``score_events``).

    ``per_class[label]`` holds ``f1``, ``precision``, ``recall``, ``true_count``, ``predicted_count``,
    ``matched`` and ``count_error``.
    """

    f1: float
    precision: float
    recall: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    count_error: float
    count_error_per_class: dict[str, float]
    true_count: int
    predicted_count: int
    recordings: int
    onset_collar_s: float = ONSET_COLLAR_S
    offset_length_share: float = OFFSET_LENGTH_SHARE

    def to_dict(self) -> dict:
        """A JSON-ready dict (strict JSON: a NaN score is ``None``)."""
        return _without_nan(asdict(self))


def score_events(
    truth: Mapping[str, Sequence[Event]],
    predicted: Mapping[str, Sequence[Event]],
    labels: Sequence[str] = CLASS_NAMES,
    *,
    onset_collar_s: float = ONSET_COLLAR_S,
    offset_length_share: float = OFFSET_LENGTH_SHARE,
) -> EventScores:
    """Score ``predicted`` events against ``truth``, both by recording (file name).

    ``truth`` names every recording scored (an empty list for one without events); a recording missing
    from ``predicted`` has no detections. A class with no detections scores 0, not sed_eval's default NaN,
    so that missing a whole class lowers ``macro_f1``; a class with no truth events has NaN recall and F1
    and is left out of ``macro_f1`` (precision 0 shows its false alarms), and NaN precision too if it has no
    detections either. ``ValueError`` for a predicted recording not in ``truth`` or a label not in ``labels``.
    """
    labels = list(labels)
    _check(truth, predicted, labels)
    metrics = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=labels,
        t_collar=float(onset_collar_s),
        percentage_of_length=float(offset_length_share),
        empty_system_output_handling="zero_score",
    )
    true_counts, predicted_counts, errors = (dict.fromkeys(labels, 0) for _ in range(3))
    for file, events in truth.items():
        found = predicted.get(file, [])
        metrics.evaluate(_sed_events(file, events), _sed_events(file, found))
        actual, detected = event_counts(events, labels), event_counts(found, labels)
        for label in labels:
            true_counts[label] += actual[label]
            predicted_counts[label] += detected[label]
            errors[label] += abs(detected[label] - actual[label])
    count_error = {label: errors[label] / len(truth) for label in labels}
    per_class = {}
    for label, result in metrics.results_class_wise_metrics().items():
        scores = {key: float(value) for key, value in result["f_measure"].items()}
        if true_counts[label] == predicted_counts[label] == 0:
            scores["precision"] = math.nan  # nothing to be precise about
        per_class[label] = {
            "f1": scores["f_measure"],
            "precision": scores["precision"],
            "recall": scores["recall"],
            "true_count": true_counts[label],
            "predicted_count": predicted_counts[label],
            "matched": int(metrics.class_wise[label]["Ntp"]),
            "count_error": count_error[label],
        }
    overall = metrics.results_overall_metrics()["f_measure"]
    return EventScores(
        f1=float(overall["f_measure"]),
        precision=float(overall["precision"]),
        recall=float(overall["recall"]),
        macro_f1=float(metrics.results_class_wise_average_metrics()["f_measure"]["f_measure"]),
        per_class=per_class,
        count_error=sum(count_error.values()),
        count_error_per_class=count_error,
        true_count=sum(true_counts.values()),
        predicted_count=sum(predicted_counts.values()),
        recordings=len(truth),
        onset_collar_s=float(onset_collar_s),
        offset_length_share=float(offset_length_share),
    )


def _check(truth: Mapping[str, Sequence[Event]], predicted: Mapping[str, Sequence[Event]], labels) -> None:
    if not truth:
        raise ValueError("no recordings to score: the truth is empty")
    unknown = [file for file in predicted if file not in truth]
    if unknown:
        raise ValueError(
            f"predicted events of {unknown[0]!r}, which the truth does not list (it lists every recording scored)"
        )
    known = set(labels)
    for file, events in [*truth.items(), *predicted.items()]:
        for event in events:
            if event.label not in known:
                raise ValueError(f"{file}: event label {event.label!r} is not one of {', '.join(labels)}")


def _sed_events(file: str, events: Sequence[Event]) -> list[dict]:
    """Events as sed_eval reads them."""
    return [
        {"file": file, "event_label": e.label, "event_onset": e.onset_s, "event_offset": e.offset_s}
        for e in events
    ]


def _without_nan(value):
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
