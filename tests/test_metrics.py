"""The shipped evaluate module and the subgroup accuracies, checked against hand-worked cases and sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from vocalsound_hf.metrics import METRIC_DIR, classification_metrics, load_metric, subgroup_accuracy
from vocalsound_hf.release import CLASS_NAMES


@pytest.fixture(scope="module")
def metric():
    return load_metric()


def test_loads_offline_by_path_as_the_project_metric(metric):
    assert (METRIC_DIR / "vocalsound_metrics.py").is_file() and (METRIC_DIR / "README.md").is_file()
    # The loader picks the first evaluate.Metric subclass it finds; the base class would compute nothing.
    assert type(metric).__name__ == "VocalsoundMetrics"
    assert "d_prime" in metric.description and "gong_vocalsound" in metric.citation


def test_hand_worked_example(metric):
    # Labels 0,1,1,2; predictions (argmax) 0,1,0,2 -> accuracy 3/4.
    scores = [[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [2.0, 0.8, 0.2], [0.1, 0.5, 1.2]]
    out = metric.compute(predictions=scores, references=[0, 1, 1, 2])
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert out["per_class_accuracy"] == pytest.approx([1.0, 0.5, 1.0])
    # F1 per class: class 0: p=1/2, r=1 -> 2/3; class 1: p=1, r=1/2 -> 2/3; class 2: 1.
    assert out["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    # Classes 0 and 2 rank their clip first. Class 1's scores rank its clips 1st and 3rd of 4:
    # AP = (1/1 + 2/3) / 2, AUC = 3 of 4 positive-negative pairs in order.
    assert out["map"] == pytest.approx((1.0 + (1 + 2 / 3) / 2 + 1.0) / 3)
    assert out["mauc"] == pytest.approx(11 / 12)
    assert out["d_prime"] == pytest.approx(math.sqrt(2) * 1.382994, abs=1e-5)  # Phi^-1(11/12) = 1.382994


def test_matches_sklearn_and_is_invariant_to_sigmoid(metric):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=300)
    logits = rng.normal(size=(300, 6)) + 1.5 * np.eye(6)[labels]
    out = metric.compute(predictions=logits, references=labels)
    onehot = np.eye(6)[labels]
    aps = [average_precision_score(onehot[:, c], logits[:, c]) for c in range(6)]
    aucs = [roc_auc_score(onehot[:, c], logits[:, c]) for c in range(6)]
    assert out["accuracy"] == pytest.approx(float((logits.argmax(1) == labels).mean()))
    assert out["map"] == pytest.approx(np.mean(aps), abs=1e-6)
    assert out["mauc"] == pytest.approx(np.mean(aucs), abs=1e-6)
    assert 0.5 < out["accuracy"] < 0.95 and 0.6 < out["mauc"] < 1.0
    sigmoid = metric.compute(predictions=1 / (1 + np.exp(-logits)), references=labels)
    for key in ("accuracy", "map", "mauc", "d_prime"):
        assert sigmoid[key] == pytest.approx(out[key], abs=1e-6)


def test_class_without_clips_is_left_out_of_the_means(metric):
    scores = [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 0.5, 3.0]]  # class 2 never occurs
    out = metric.compute(predictions=scores, references=[0, 1, 1])
    assert math.isnan(out["per_class_accuracy"][2])
    assert out["map"] == 1.0 and out["mauc"] == 1.0  # classes 0 and 1 rank their clips first
    assert out["confusion_matrix"][1] == [0, 1, 1]  # the second sigh is predicted as class 2


@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [
        ([[1.0, 0.0]], [0, 1], "number of predictions"),
        ([[1.0, 0.0]], [2], r"labels in \[0, 2\)"),
        ([], [], "no clips to evaluate"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_error(metric, predictions, references, message):
    with pytest.raises(ValueError, match=message):
        metric.compute(predictions=predictions, references=references)


def test_subgroup_accuracy_by_hand():
    predicted = [0, 1, 2, 3, 4, 5]
    labels = [0, 1, 0, 3, 0, 0]  # clips 0, 1, 3 are right
    metadata = {
        "age_group": ["18-25", "18-25", "26-48", None, "49-80", "49-80"],
        "gender": ["female", "male", "female", "other", "male", "female"],
        "health_condition": ["no", "asthma", "no", None, "no", "cold"],
    }
    out = subgroup_accuracy(predicted, labels, metadata)
    assert out["accuracy_age_18_25"] == 1.0 and out["samples_age_18_25"] == 2
    assert out["accuracy_age_26_48"] == 0.0 and out["samples_age_26_48"] == 1
    assert out["accuracy_age_49_80"] == 0.0 and out["samples_age_49_80"] == 2
    assert out["accuracy_female"] == pytest.approx(1 / 3) and out["samples_female"] == 3
    assert out["accuracy_male"] == pytest.approx(1 / 2)
    assert out["accuracy_healthy"] == pytest.approx(1 / 3) and out["samples_healthy"] == 3
    assert (
        out["accuracy_unhealthy"] == pytest.approx(1 / 2) and out["samples_unhealthy"] == 2
    )  # unknown is neither


def test_empty_subgroup_and_misaligned_metadata():
    out = subgroup_accuracy([0, 1], [0, 1], {"gender": ["female", "female"]})
    assert out["accuracy_male"] is None and out["samples_male"] == 0
    assert out["accuracy_age_18_25"] is None  # no age column: no age subgroup
    with pytest.raises(ValueError, match="'gender' has 3 values for 2 predictions"):
        subgroup_accuracy([0, 1], [0, 1], {"gender": ["female", "male", "male"]})


def test_classification_metrics_are_flat_and_named_by_class(metric):
    labels = np.arange(12) % 6
    logits = np.eye(6)[labels] * 4.0
    logits[0] = np.eye(6)[1]  # one laughter clip predicted as sigh
    out = classification_metrics(metric, logits, labels, CLASS_NAMES, {"gender": ["female", "male"] * 6})
    assert out["accuracy"] == pytest.approx(11 / 12)
    assert out["accuracy_laughter"] == pytest.approx(0.5) and out["accuracy_throat_clearing"] == 1.0
    assert out["accuracy_female"] == pytest.approx(5 / 6) and out["accuracy_male"] == 1.0
    assert out["confusion_matrix"][0][1] == 1
