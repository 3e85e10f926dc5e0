"""Classification measures as pure functions of predicted and true class ids."""

from __future__ import annotations

from collections.abc import Sequence


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Share of predictions equal to their label (0.0 for no examples)."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    return sum(p == y for p, y in zip(predictions, labels)) / len(labels) if labels else 0.0


def macro_f1(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """The unweighted mean over classes of F1 = 2·TP / (2·TP + FP + FN).

    The classes averaged are those that occur among the labels or the predictions (as
    scikit-learn's ``f1_score(average="macro")`` with no ``labels`` argument): a class never
    seen in either has no F1 to contribute. Each class counts the same whatever its size,
    which is why it is reported beside accuracy on unbalanced label sets. 0.0 for no examples.
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    classes = sorted(set(predictions) | set(labels))
    if not classes:
        return 0.0
    scores = []
    for c in classes:
        tp = sum(p == c and y == c for p, y in zip(predictions, labels))
        fp = sum(p == c and y != c for p, y in zip(predictions, labels))
        fn = sum(p != c and y == c for p, y in zip(predictions, labels))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)
