"""VocalSound metrics: accuracy, macro-F1, per-class accuracy, confusion matrix, mAP, mAUC and d-prime.

Self-contained (numpy, scikit-learn and scipy only) so that the same file works loaded by path and
from the Hub with ``evaluate.load``.
"""

import datasets
import evaluate
import numpy as np
from scipy.stats import norm
from sklearn.metrics import accuracy_score, average_precision_score, confusion_matrix, f1_score, roc_auc_score

_DESCRIPTION = """\
The metrics of the VocalSound baseline (Gong et al., ICASSP 2022) and of the Audio Spectrogram
Transformer recipes, from per-class scores and integer labels of a single-label classification task:

- accuracy: the fraction of clips whose highest-scoring class is the label;
- macro_f1: the unweighted mean over classes of the F1 score;
- per_class_accuracy: for each class, the fraction of its clips classified correctly (its recall);
- confusion_matrix: rows are labels, columns are predictions;
- map / mauc: the mean over classes of the average precision and of the ROC AUC, one class against
  the rest, as AST's ``calculate_stats`` computes them;
- d_prime: sqrt(2) * Phi^-1(mAUC), from the mean AUC as AST reports it.

AP and AUC only depend on how each class's scores rank the clips, so logits and sigmoid outputs give
the same values (a softmax does not: it mixes the classes). A class without positive or without
negative clips has no AP/AUC; the means are taken over the classes that have both (AST's code raises
instead), and are NaN when no class does.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): per-class scores of each clip (logits, sigmoid outputs or
        probabilities), shape (n_clips, n_classes).
    references (`list` of `int`): the label of each clip, in [0, n_classes).
    num_classes (`int`, *optional*): the number of classes; defaults to the width of `predictions`.

Returns:
    accuracy (`float`), macro_f1 (`float`), per_class_accuracy (`list` of `float`, NaN for a class
    without clips), confusion_matrix (`list` of `list` of `int`), map (`float`), mauc (`float`),
    d_prime (`float`).

Examples:
    >>> metric = evaluate.load("path/to/vocalsound_metrics")
    >>> results = metric.compute(predictions=[[2.0, 0.1], [0.3, 1.5], [0.9, 0.2]], references=[0, 1, 1])
    >>> round(results["accuracy"], 4), results["confusion_matrix"]
    (0.6667, [[1, 0], [1, 1]])
"""

_CITATION = """\
@inproceedings{gong_vocalsound,
  title={Vocalsound: A Dataset for Improving Human Vocal Sounds Recognition},
  author={Gong, Yuan and Yu, Jin and Glass, James},
  booktitle={ICASSP 2022-2022 IEEE International Conference on Acoustics, Speech and Signal Processing (ICASSP)},
  pages={151--155},
  year={2022},
  organization={IEEE}
}
@inproceedings{gong21b_interspeech,
  title={{AST: Audio Spectrogram Transformer}},
  author={Gong, Yuan and Chung, Yu-An and Glass, James},
  booktitle={Proc. Interspeech 2021},
  pages={571--575},
  year={2021}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VocalsoundMetrics(evaluate.Metric):
    """Accuracy, macro-F1, per-class accuracy, confusion matrix, mAP, mAUC and d-prime."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                }
            ),
            homepage="https://github.com/YuanGongND/vocalsound",
            reference_urls=["https://github.com/YuanGongND/ast/blob/master/src/utilities/stats.py"],
        )

    def _compute(self, predictions, references, num_classes=None):
        scores = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references, dtype=np.int64)
        if len(labels) == 0:
            raise ValueError("no clips to evaluate: predictions and references are empty")
        if scores.ndim != 2 or len(scores) != len(labels):
            raise ValueError(
                f"predictions must be per-class scores of shape (n_clips, n_classes) with one row per reference; "
                f"got shape {scores.shape} for {len(labels)} references"
            )
        num_classes = scores.shape[1] if num_classes is None else int(num_classes)
        if scores.shape[1] != num_classes or labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(
                f"expected {num_classes} scores per clip and labels in [0, {num_classes}); got {scores.shape[1]} "
                f"scores and labels in [{labels.min()}, {labels.max()}]"
            )
        classes = np.arange(num_classes)
        predicted = scores.argmax(axis=1)
        matrix = confusion_matrix(labels, predicted, labels=classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.diag(matrix) / matrix.sum(axis=1)

        aps, aucs = [], []
        for c in classes:
            positives = labels == c
            if positives.all() or not positives.any():
                continue
            aps.append(average_precision_score(positives, scores[:, c]))
            aucs.append(roc_auc_score(positives, scores[:, c]))
        mean_ap = float(np.mean(aps)) if aps else float("nan")
        mean_auc = float(np.mean(aucs)) if aucs else float("nan")
        return {
            "accuracy": float(accuracy_score(labels, predicted)),
            "macro_f1": float(f1_score(labels, predicted, labels=classes, average="macro", zero_division=0)),
            "per_class_accuracy": [float(x) for x in per_class],
            "confusion_matrix": matrix.tolist(),
            "map": mean_ap,
            "mauc": mean_auc,
            "d_prime": float(np.sqrt(2.0) * norm.ppf(mean_auc)),
        }
