"""A fast trainable text classifier (hashed n-gram logistic regression) and the ``classifier`` step.

What it is: fastText-style bag of hashed features fed to a logistic regression, in numpy.

- **Features**: the casefolded text is split into ``\\w+`` words and single punctuation marks;
  word n-grams 1..``word_ngrams`` and, optionally, character n-grams 3..``char_ngrams`` of each
  word wrapped as ``<word>`` (fastText's subword trick, for misspellings and rare forms) are
  hashed into ``num_buckets`` buckets. Hashing is ``zlib.crc32`` (words, character n-grams)
  combined arithmetically for longer n-grams, so a model gives the same features in every
  process; Python's own ``hash()`` of a string is salted per process and would not.
  A document's vector is binary (a bucket is present or not) scaled to unit L2 norm, so long
  and short texts score on the same scale.
- **Training**: logistic loss with L2 decay, one example at a time with Adagrad step sizes
  (each bucket's rate shrinks with its own squared gradients: rare n-grams keep learning);
  only the buckets an example touches are updated, and so decayed (the usual lazy-L2
  shortcut). The example order comes from ``numpy.random.default_rng(seed)``: same data,
  same seed, same model, bit for bit.
- **Held-out split**: each example goes to the held-out side by a keyed BLAKE2b hash of its
  text, so the split ignores file order and exact duplicates never straddle it.

``train_classifier`` reads labelled JSONL, trains, writes the model (``.npz``: weights and the
featuriser settings) and a report (``.report.json`` next to it: held-out precision, recall,
F1, accuracy, counts, threshold), both atomically. Labels are JSON ``1``/``true`` (flag the text,
e.g. harmful or boilerplate) and ``0``/``false`` (keep); anything else is a ``DataError``
naming the file and line.

The ``classifier`` pipeline step scores each document; with ``action: drop`` it drops a
document whose score reaches the threshold (reason ``classifier_flagged``), and it always
records the score in ``meta["classifier_score"]`` on the documents it keeps.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Literal, Optional, Union

import numpy as np

from lmforge.config import ClassifierTrainConfig, option
from lmforge.data.docfile import tmp_sibling, write_json
from lmforge.data.document import Document
from lmforge.data.steps import DocStep, Drop, register_step
from lmforge.errors import ConfigError, DataError

FORMAT = "lmforge-hashed-ngram-logreg-v1"
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
# Odd 64-bit constants: the n-gram combiner multiplies by one, the finaliser mixes with the
# other (splitmix64's multipliers), so "a b" and "b a" land in unrelated buckets.
_COMBINE = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0xBF58476D1CE4E5B9)
# Character n-grams start their CRC from a different value, so "<ab" as a character n-gram and
# "<ab" as a word token do not share a bucket.
_CHAR_CRC_START = zlib.crc32(b"\x00char-ngram")


@dataclass(frozen=True)
class Featuriser:
    """Turns a text into sorted unique bucket ids and their values (see the module docstring)."""

    num_buckets: int
    word_ngrams: int
    char_ngrams: int

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        tokens = _TOKEN_RE.findall(text.casefold())
        unigram = np.fromiter((zlib.crc32(t.encode("utf-8")) for t in tokens), dtype=np.uint64,
                              count=len(tokens))
        hashes = [unigram]
        ngram = unigram
        for n in range(2, self.word_ngrams + 1):
            ngram = ngram[:-1] * _COMBINE + unigram[n - 1:]  # wraps mod 2**64, as intended
            hashes.append(_mix(ngram + np.uint64(n)))
        if self.char_ngrams >= 3:
            hashes.append(self._char_hashes(set(tokens)))
        buckets = np.unique(np.concatenate(hashes) % np.uint64(self.num_buckets)).astype(np.int64)
        values = np.full(len(buckets), 1.0 / np.sqrt(max(len(buckets), 1)))
        return buckets, values

    def _char_hashes(self, words: set[str]) -> np.ndarray:
        grams = []
        for word in sorted(words):
            wrapped = f"<{word}>".encode("utf-8")
            for n in range(3, self.char_ngrams + 1):
                grams.extend(zlib.crc32(wrapped[i:i + n], _CHAR_CRC_START)
                             for i in range(len(wrapped) - n + 1))
        return np.array(grams, dtype=np.uint64)


def _mix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(31))
    h = h * _MIX
    return h ^ (h >> np.uint64(29))


def _sigmoid(z: float) -> float:
    # two branches so that neither exp overflows for large |z|
    return 1.0 / (1.0 + np.exp(-z)) if z >= 0 else np.exp(z) / (1.0 + np.exp(z))


class HashedNgramClassifier:
    """A trained model: featuriser settings, weights, bias and its default threshold."""

    def __init__(self, featuriser: Featuriser, weights: np.ndarray, bias: float, threshold: float):
        self.featuriser = featuriser
        self.weights = weights.astype(np.float32)  # float32 on disk and in memory: saved == live
        self.bias = float(bias)
        self.threshold = float(threshold)

    def score(self, text: str) -> float:
        """Probability that ``text`` belongs to the flagged class (label 1)."""
        buckets, values = self.featuriser.features(text)
        return float(_sigmoid(float(self.weights[buckets].astype(np.float64) @ values) + self.bias))

    def save(self, path: str) -> None:
        """Write the model to ``path`` (.npz) atomically."""
        meta = {"format": FORMAT, **asdict(self.featuriser), "bias": self.bias, "threshold": self.threshold}
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = tmp_sibling(path)
        with open(tmp, "wb") as f:  # a file object, so numpy does not append ".npz" to the name
            np.savez_compressed(f, weights=self.weights, meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "HashedNgramClassifier":
        """Read a model written by ``save``; DataError if it is missing or not such a model."""
        if not os.path.isfile(path):
            raise DataError(f"classifier model '{path}' not found: train one with "
                            f"`lmforge data train-classifier` or fix the step's model path")
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                weights = npz["weights"]
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"'{path}' is not an lmforge classifier model ({err}): retrain it") from None
        if meta.get("format") != FORMAT or len(weights) != meta["num_buckets"]:
            raise DataError(f"'{path}' is not an lmforge classifier model of format {FORMAT}: retrain it")
        featuriser = Featuriser(meta["num_buckets"], meta["word_ngrams"], meta["char_ngrams"])
        return cls(featuriser, weights, meta["bias"], meta["threshold"])


# ----------------------------------------------------------------------------- training


def read_labelled_jsonl(path: str, text_field: str, label_field: str) -> tuple[list[str], list[int]]:
    """Texts and 0/1 labels of a JSONL file; the first bad line is a DataError naming it."""
    if not os.path.isfile(path):
        raise DataError(f"labelled data '{path}' not found: pass --data FILE.jsonl")
    texts, labels = [], []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue  # a blank line holds no example
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise DataError(f"{where} is not a JSON object in UTF-8: fix or remove the line") from None
            if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
                raise DataError(f"{where} has no string field '{text_field}': "
                                f"fix the line or set --text_field")
            label = obj.get(label_field)
            # bool is a subclass of int, and 1.0 == 1: accept exactly JSON 0, 1, true, false
            if type(label) not in (bool, int) or label not in (0, 1):
                raise DataError(f"{where} has label {label!r} in field '{label_field}': "
                                f"labels must be 0/1 or false/true (1/true = flag)")
            texts.append(obj[text_field])
            labels.append(int(label))
    if not texts:
        raise DataError(f"labelled data '{path}' has no examples")
    return texts, labels


def held_out_mask(texts: list[str], val_fraction: float, seed: int) -> np.ndarray:
    """True for the ``round(n * val_fraction)`` texts with the smallest keyed hash."""
    key = seed.to_bytes(8, "little", signed=True)
    order = sorted(range(len(texts)), key=lambda i: (
        hashlib.blake2b(texts[i].encode("utf-8"), digest_size=8, key=key).digest(), i))
    mask = np.zeros(len(texts), dtype=bool)
    mask[order[:round(len(texts) * val_fraction)]] = True
    return mask


def fit(examples: list[tuple[np.ndarray, np.ndarray]], labels: np.ndarray, num_buckets: int,
        epochs: int, lr: float, l2: float, seed: int) -> tuple[np.ndarray, float]:
    """Adagrad logistic regression over sparse examples; returns (weights, bias)."""
    weights = np.zeros(num_buckets)
    grad_sq = np.zeros(num_buckets)
    bias, bias_grad_sq = 0.0, 0.0
    eps = 1e-8
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for i in rng.permutation(len(examples)):
            buckets, values = examples[i]
            w = weights[buckets]
            error = _sigmoid(float(w @ values) + bias) - labels[i]  # d loss / d logit
            grad = error * values + l2 * w
            grad_sq[buckets] += grad * grad
            weights[buckets] = w - lr * grad / (np.sqrt(grad_sq[buckets]) + eps)
            bias_grad_sq += error * error
            bias -= lr * error / (np.sqrt(bias_grad_sq) + eps)
    return weights, bias


def binary_metrics(labels: np.ndarray, flagged: np.ndarray) -> dict[str, Any]:
    """Precision, recall, F1, accuracy and the confusion counts (0.0 where undefined)."""
    tp = int(np.sum(flagged & (labels == 1)))
    fp = int(np.sum(flagged & (labels == 0)))
    fn = int(np.sum(~flagged & (labels == 1)))
    tn = int(np.sum(~flagged & (labels == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = (tp + tn) / len(labels) if len(labels) else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def report_path(model_path: str) -> str:
    """Where ``train_classifier`` writes the report of the model at ``model_path``."""
    return os.path.splitext(model_path)[0] + ".report.json"


def _check_config(cfg: ClassifierTrainConfig) -> None:
    if not cfg.data:
        raise ConfigError("config key 'data': give the labelled JSONL file to train on (--data FILE)")
    if not 0.0 < cfg.val_fraction < 1.0:
        raise ConfigError(f"config key 'val_fraction': expected a fraction in (0, 1), got {cfg.val_fraction}")
    if cfg.num_buckets < 1 or cfg.word_ngrams < 1 or cfg.epochs < 1:
        raise ConfigError("config keys 'num_buckets', 'word_ngrams', 'epochs' must be >= 1")
    if cfg.char_ngrams != 0 and cfg.char_ngrams < 3:
        raise ConfigError(f"config key 'char_ngrams': expected 0 (off) or >= 3, got {cfg.char_ngrams}")
    if cfg.lr <= 0 or cfg.l2 < 0 or not 0.0 <= cfg.threshold <= 1.0:
        raise ConfigError("config keys: 'lr' must be > 0, 'l2' >= 0 and 'threshold' in [0, 1]")


def train_classifier(cfg: ClassifierTrainConfig) -> dict[str, Any]:
    """Train on ``cfg.data``, write the model to ``cfg.out`` and its report next to it; return the report."""
    _check_config(cfg)
    started = time.perf_counter()
    texts, label_list = read_labelled_jsonl(cfg.data, cfg.text_field, cfg.label_field)
    labels = np.array(label_list, dtype=np.int64)
    held_out = held_out_mask(texts, cfg.val_fraction, cfg.seed)
    train_labels, val_labels = labels[~held_out], labels[held_out]
    if len(val_labels) == 0 or len(set(train_labels.tolist())) < 2:
        raise DataError(f"labelled data '{cfg.data}' gives {len(train_labels)} training and {len(val_labels)} "
                        f"held-out examples: training needs both labels and the held-out split at least one "
                        f"example; add examples or raise --val_fraction")
    featuriser = Featuriser(cfg.num_buckets, cfg.word_ngrams, cfg.char_ngrams)
    features = [featuriser.features(t) for t in texts]
    train_features = [f for f, out in zip(features, held_out) if not out]
    with np.errstate(over="ignore", invalid="ignore"):  # a divergence is reported below, in one line
        weights, bias = fit(train_features, train_labels, cfg.num_buckets, cfg.epochs, cfg.lr, cfg.l2, cfg.seed)
    limit = float(np.finfo(np.float32).max)  # the weights are kept as float32
    if not (np.all(np.abs(weights) < limit) and abs(bias) < limit):
        raise ConfigError(f"config keys 'lr', 'l2': training diverged with lr {cfg.lr} and l2 {cfg.l2} (the "
                          f"weights overflowed float32): lower --lr or --l2")
    model = HashedNgramClassifier(featuriser, weights, bias, cfg.threshold)
    model.save(cfg.out)

    val_scores = np.array([model.score(t) for t, out in zip(texts, held_out) if out])
    report = {
        "data": cfg.data,
        "model": cfg.out,
        "threshold": cfg.threshold,
        **binary_metrics(val_labels, val_scores >= cfg.threshold),
        "num_train": int(len(train_labels)),
        "num_train_flagged": int(train_labels.sum()),
        "num_held_out": int(len(val_labels)),
        "num_held_out_flagged": int(val_labels.sum()),
        "hyperparameters": {k: getattr(cfg, k) for k in (
            "num_buckets", "word_ngrams", "char_ngrams", "epochs", "lr", "l2", "val_fraction", "seed")},
        "train_seconds": round(time.perf_counter() - started, 3),
    }
    write_json(report_path(cfg.out), report)
    return report


def format_classifier_report(report: dict[str, Any]) -> str:
    """The report as a few lines for the terminal."""
    return "\n".join([
        f"classifier written to {report['model']} (report: {report_path(report['model'])})",
        f"trained on {report['num_train']} examples ({report['num_train_flagged']} flagged), "
        f"held out {report['num_held_out']} ({report['num_held_out_flagged']} flagged) "
        f"in {report['train_seconds']:.1f} s",
        f"held-out at threshold {report['threshold']:g}: precision {report['precision']:.3f}  "
        f"recall {report['recall']:.3f}  F1 {report['f1']:.3f}  accuracy {report['accuracy']:.3f}",
        f"confusion: tp {report['tp']}  fp {report['fp']}  fn {report['fn']}  tn {report['tn']}",
    ])


# ----------------------------------------------------------------------------- pipeline step


@dataclass
class ClassifierStepOptions:
    """Options of the ``classifier`` step."""

    model: str = option("", "classifier .npz written by `lmforge data train-classifier`")
    threshold: Optional[float] = option(None, "flag at this probability or above (null = the model's own)")
    action: Literal["drop", "tag"] = option("drop", "drop: drop flagged documents; tag: keep all, "
                                                    "only record meta['classifier_score']")


@register_step("classifier", ClassifierStepOptions, "drop or tag documents a trained n-gram classifier flags")
class ClassifierStep(DocStep):
    """Scores documents with a trained classifier, loaded once per step object on first use."""

    def __init__(self, options: ClassifierStepOptions):
        self.options = options
        if not options.model:
            raise ConfigError("classifier step: set 'model' to a trained classifier .npz")
        if not os.path.isfile(options.model):
            raise DataError(f"classifier model '{options.model}' not found: train one with "
                            f"`lmforge data train-classifier` or fix the step's model path")
        if options.threshold is not None and not 0.0 <= options.threshold <= 1.0:
            raise ConfigError(f"classifier step: 'threshold' must be in [0, 1] or null, got {options.threshold}")
        self._model: Optional[HashedNgramClassifier] = None

    def __getstate__(self) -> dict[str, Any]:
        # Workers load the model themselves: pickling the weights would ship them once per worker.
        return {**self.__dict__, "_model": None}

    @property
    def model(self) -> HashedNgramClassifier:
        if self._model is None:
            self._model = HashedNgramClassifier.load(self.options.model)
        return self._model

    def __call__(self, doc: Document) -> Union[Document, Drop]:
        model = self.model
        score = model.score(doc.text)
        threshold = model.threshold if self.options.threshold is None else self.options.threshold
        if self.options.action == "drop" and score >= threshold:
            return Drop("classifier_flagged", f"p={score:.4f} >= {threshold:g}")
        return Document(doc.id, doc.text, {**doc.meta, "classifier_score": round(score, 6)})
