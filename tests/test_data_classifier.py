"""The hashed n-gram classifier: features, training, the report, save/load, and the pipeline step."""

from __future__ import annotations

import json
import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest

from lmforge.config import ClassifierTrainConfig
from lmforge.data.document import Document
from lmforge.data.safety.classifier import (ClassifierStep, ClassifierStepOptions, Featuriser,
                                            HashedNgramClassifier, binary_metrics, fit,
                                            format_classifier_report, held_out_mask,
                                            read_labelled_jsonl, report_path, train_classifier)
from lmforge.data.steps import Drop, build_step
from lmforge.errors import ConfigError, DataError

FILLER = "the a of to and in is it that for on with as was at by this be from".split()
SPAM = "buy cheap pills casino winner prize click free offer bonus jackpot discount".split()
NEWS = "council report river museum harvest library election bridge weather school".split()


def generated_rows(num_rows: int, seed: int = 0) -> list[dict]:
    """A separable toy task: spam-ish (1) vs news-ish (0) word salads over shared filler words."""
    rng = random.Random(seed)
    rows = []
    for i in range(num_rows):
        label = i % 2
        topic = SPAM if label else NEWS
        words = [rng.choice(FILLER) if rng.random() < 0.6 else rng.choice(topic) for _ in range(rng.randint(8, 30))]
        rows.append({"text": " ".join(words), "label": label})
    return rows


def write_jsonl(path, rows) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return str(path)


def small_config(tmp_path, **overrides) -> ClassifierTrainConfig:
    data = write_jsonl(tmp_path / "train.jsonl", generated_rows(400))
    values = dict(data=data, out=str(tmp_path / "model" / "clf.npz"), num_buckets=1 << 14, epochs=5)
    return ClassifierTrainConfig(**{**values, **overrides})


def test_features_are_unit_norm_and_count_word_and_char_ngrams():
    buckets, values = Featuriser(1 << 30, 1, 0).features("b a b")
    assert len(buckets) == 2 and np.allclose(values, 1 / np.sqrt(2))  # binary: "b" twice is one feature
    # "a b c": 3 unigrams + 2 bigrams + 1 trigram
    assert len(Featuriser(1 << 30, 3, 0).features("a b c")[0]) == 6
    # "ab" with char 3..4 grams: word "ab", then "<ab", "ab>", "<ab>"
    assert len(Featuriser(1 << 30, 1, 4).features("ab")[0]) == 4
    assert len(Featuriser(1 << 30, 2, 0).features("")[0]) == 0
    # casefolded: "Hello" and "HELLO" have the same features; order matters for bigrams
    f = Featuriser(1 << 20, 2, 0)
    assert np.array_equal(f.features("Hello world")[0], f.features("HELLO WORLD")[0])
    assert not np.array_equal(f.features("a b")[0], f.features("b a")[0])


def test_features_do_not_depend_on_the_process_hash_seed():
    code = ("from lmforge.data.safety.classifier import Featuriser;"
            "print(Featuriser(1 << 20, 2, 4).features('Deterministic hashing, please!')[0].tolist())")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    here = Featuriser(1 << 20, 2, 4).features("Deterministic hashing, please!")[0].tolist()
    assert json.loads(out.stdout) == here


def test_held_out_split_is_exact_order_free_and_keeps_duplicates_together():
    texts = [f"text {i}" for i in range(50)] + ["dup"] * 4
    mask = held_out_mask(texts, 0.2, seed=3)
    assert mask.sum() == round(54 * 0.2)
    assert len(set(mask[-4:].tolist())) == 1  # the four copies sit on one side
    reordered = list(reversed(texts))
    assert {t for t, m in zip(reordered, held_out_mask(reordered, 0.2, seed=3)) if m} == \
        {t for t, m in zip(texts, mask) if m}
    assert not np.array_equal(mask, held_out_mask(texts, 0.2, seed=4))


def test_binary_metrics_by_hand():
    metrics = binary_metrics(np.array([1, 1, 0, 0, 1]), np.array([True, False, True, False, True]))
    assert metrics == {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "accuracy": 3 / 5,
                       "tp": 2, "fp": 1, "fn": 1, "tn": 1}
    assert binary_metrics(np.array([0, 1]), np.array([False, False]))["precision"] == 0.0


def test_train_learns_a_separable_task_and_writes_model_and_report(tmp_path):
    cfg = small_config(tmp_path)
    report = train_classifier(cfg)
    assert report["num_held_out"] == 80 and report["num_train"] == 320
    assert report["num_train_flagged"] + report["num_held_out_flagged"] == 200
    assert report["f1"] >= 0.95 and report["accuracy"] >= 0.95
    assert report["threshold"] == 0.5 and report["hyperparameters"]["num_buckets"] == 1 << 14
    assert os.path.isfile(cfg.out)
    with open(report_path(cfg.out), encoding="utf-8") as f:
        assert json.load(f) == report
    assert sorted(os.listdir(tmp_path / "model")) == ["clf.npz", "clf.report.json"]  # no temp files left
    text = format_classifier_report(report)
    assert f"F1 {report['f1']:.3f}" in text and "held out 80" in text


def test_training_is_deterministic_and_the_model_round_trips(tmp_path):
    cfg = small_config(tmp_path, char_ngrams=4)
    first = train_classifier(cfg)
    weights_first = HashedNgramClassifier.load(cfg.out).weights
    cfg.out = str(tmp_path / "again.npz")
    second = train_classifier(cfg)
    assert {k: v for k, v in first.items() if k not in ("model", "train_seconds")} == \
        {k: v for k, v in second.items() if k not in ("model", "train_seconds")}
    assert np.array_equal(weights_first, HashedNgramClassifier.load(cfg.out).weights)

    # a model built in memory predicts exactly what its saved-and-loaded copy predicts
    featuriser = Featuriser(1 << 12, 2, 3)
    rows = generated_rows(60, seed=1)
    examples = [featuriser.features(r["text"]) for r in rows]
    weights, bias = fit(examples, np.array([r["label"] for r in rows]), 1 << 12, epochs=3, lr=0.5, l2=1e-6, seed=0)
    live = HashedNgramClassifier(featuriser, weights, bias, threshold=0.7)
    live.save(str(tmp_path / "live.npz"))
    loaded = HashedNgramClassifier.load(str(tmp_path / "live.npz"))
    assert loaded.featuriser == featuriser and loaded.threshold == 0.7 and loaded.bias == live.bias
    assert [live.score(r["text"]) for r in rows] == [loaded.score(r["text"]) for r in rows]


@pytest.mark.parametrize("line, message", [
    ("{not json", "is not a JSON object"),
    ('{"label": 1}', "no string field 'text'"),
    ('{"text": "x", "label": "yes"}', "has label 'yes'"),
    ('{"text": "x", "label": 2}', "has label 2"),
    ('{"text": "x", "label": 1.0}', "has label 1.0"),
    ('["text", 1]', "no string field 'text'"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", ['{"text": "fine", "label": true}', "", line])
    with pytest.raises(DataError, match=f"bad.jsonl:3 .*{message}"):
        read_labelled_jsonl(path, "text", "label")


def test_labels_accepted_and_data_mistakes(tmp_path):
    path = write_jsonl(tmp_path / "ok.jsonl", [{"t": "a", "y": True}, {"t": "b", "y": 0}, {"t": "c", "y": 1}])
    assert read_labelled_jsonl(path, "t", "y") == (["a", "b", "c"], [1, 0, 1])
    one_class = write_jsonl(tmp_path / "one.jsonl", [{"text": f"t{i}", "label": 0} for i in range(20)])
    with pytest.raises(DataError, match="needs both labels"):
        train_classifier(ClassifierTrainConfig(data=one_class, out=str(tmp_path / "m.npz"), num_buckets=64))
    with pytest.raises(DataError, match="not found"):
        train_classifier(ClassifierTrainConfig(data=str(tmp_path / "nope.jsonl")))
    with pytest.raises(ConfigError, match="val_fraction"):
        train_classifier(ClassifierTrainConfig(data=path, val_fraction=1.0))
    with pytest.raises(ConfigError, match="char_ngrams"):
        train_classifier(ClassifierTrainConfig(data=path, char_ngrams=2))
    not_a_model = tmp_path / "x.npz"
    not_a_model.write_bytes(b"junk")
    with pytest.raises(DataError, match="not an lmforge classifier model"):
        HashedNgramClassifier.load(str(not_a_model))


def test_classifier_step_drops_or_tags_and_pickles_without_weights(tmp_path):
    cfg = small_config(tmp_path)
    train_classifier(cfg)
    spam = Document("s", "buy cheap pills click free bonus casino winner", {"source": "x"})
    news = Document("n", "the council report on the river museum and the library", {})

    step = build_step({"step": "classifier", "model": cfg.out}, 0)
    dropped = step(spam)
    assert isinstance(dropped, Drop) and dropped.reason == "classifier_flagged"
    score = HashedNgramClassifier.load(cfg.out).score(spam.text)
    assert dropped.detail == f"p={score:.4f} >= 0.5"
    kept = step(news)
    assert kept.text == news.text and kept.meta["classifier_score"] < 0.5

    tagger = ClassifierStep(ClassifierStepOptions(model=cfg.out, action="tag"))
    tagged = tagger(spam)
    assert tagged.meta == {"source": "x", "classifier_score": round(score, 6)}
    strict = ClassifierStep(ClassifierStepOptions(model=cfg.out, threshold=1.0))
    assert strict(spam).text == spam.text  # nothing scores exactly 1.0 here

    # the loaded model stays out of the pickle; a worker loads its own copy on first use
    assert step._model is not None
    payload = pickle.dumps(step)
    assert len(payload) < 2000
    assert pickle.loads(payload)(spam) == dropped

    with pytest.raises(DataError, match="not found"):
        ClassifierStep(ClassifierStepOptions(model=str(tmp_path / "missing.npz")))
    with pytest.raises(ConfigError, match="threshold"):
        ClassifierStep(ClassifierStepOptions(model=cfg.out, threshold=1.5))
    with pytest.raises(ConfigError, match="steps\\[1\\].action"):
        build_step({"step": "classifier", "model": cfg.out, "action": "delete"}, 1)
    null_threshold = build_step({"step": "classifier", "model": cfg.out, "threshold": None}, 0)
    assert null_threshold.options.threshold is None
