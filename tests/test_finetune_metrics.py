"""Classification measures (lmforge.finetune.metrics), checked against counts done by hand."""

from __future__ import annotations

import pytest

from lmforge.finetune.metrics import accuracy, macro_f1


def test_macro_f1_by_hand():
    labels = [0, 0, 0, 1, 1, 2]
    predictions = [0, 0, 1, 1, 2, 2]
    # class 0: TP 2, FP 0, FN 1 -> F1 = 4/5; class 1: TP 1, FP 1, FN 1 -> 2/4;
    # class 2: TP 1, FP 1, FN 0 -> 2/3. Mean = (0.8 + 0.5 + 0.6667) / 3.
    assert macro_f1(predictions, labels) == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert accuracy(predictions, labels) == pytest.approx(4 / 6)


def test_macro_f1_weighs_each_class_equally_unlike_accuracy():
    labels = [0] * 9 + [1]
    always_zero = [0] * 10
    # class 0: TP 9, FP 1, FN 0 -> 18/19; class 1: TP 0, FP 0, FN 1 -> 0. Accuracy 0.9.
    assert accuracy(always_zero, labels) == pytest.approx(0.9)
    assert macro_f1(always_zero, labels) == pytest.approx(18 / 19 / 2)


def test_macro_f1_perfect_and_classes_only_predicted_count():
    assert macro_f1([2, 0, 1], [2, 0, 1]) == 1.0
    # class 3 is never a label but is predicted once: its F1 is 0 and it is averaged in
    # (scikit-learn's default). class 0: TP 1, FN 1 -> 2/3.
    assert macro_f1([0, 3], [0, 0]) == pytest.approx((2 / 3 + 0.0) / 2)


def test_empty_and_mismatched():
    assert macro_f1([], []) == 0.0 and accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        macro_f1([0], [0, 1])
