"""MinHash dedup: signature throughput against datatrove, and detection quality on planted near-duplicates.

(a) Throughput: ``minhash_dedup``'s worker pass (``fingerprint``: normalise, shingle, 112
    permutations, 14 band keys, and with the default options the bottom-512 sketch that
    verification uses; also timed without it) on ~3 KB documents, one core, against a plain numpy MinHash
    (sha1 per shingle, one matrix: REFERENCE.md's ~1,000 docs/s per core) and datatrove's
    ``MinhashDedupSignature.get_shingles`` + ``get_signature`` on the same documents (sha1
    64-bit hashing: datatrove's default xxhash needs a package lmforge does not install).
    Runs alternate between the two; the figure is the median.
(b) Quality: a generated corpus of base documents (Zipf-distributed words, sentences,
    paragraphs, some shared boilerplate) plus planted variants edited (substitutions,
    insertions, deletions) to hit target Jaccard similarities spread over ``--spread``;
    the true Jaccard of each pair is measured on the same normalised 5-gram shingle sets the
    step uses. Ground truth: pairs with true Jaccard >= 0.75 (FineWeb's target). Predicted:
    pairs in the same cluster after ``decide``. Reports pair precision, recall and F1 with
    no verification (FineWeb), with the Jaccard estimated from the 112-value signature
    (``verify_sketch_size: 0``, the previous default) and from bottom-k sketches (the
    default, k = 512; other k at 0.75), for several ``verify_threshold`` values, and per
    similarity bucket the detection rate next to the theoretical 1 - (1 - s^8)^14.

Prints tables, then one JSON line with every figure.

    OMP_NUM_THREADS=1 python benchmarks/dedup.py
    python benchmarks/dedup.py --base-docs 5000 --no-peer
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the per-core figure says

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from typing import Any, Optional

import numpy as np

from lmforge.data.dedup.minhash import MinHashDedup, MinHashDedupOptions, MinHashFingerprint
from lmforge.data.dedup.normalize import normalize_text
from lmforge.data.dedup.signature import MERSENNE_PRIME, band_keys, candidate_probability, minhash_signature
from lmforge.data.dedup.sketch import bottom_k_sketch
from lmforge.data.document import Document
from lmforge.data.steps import DocRef

TRUTH_THRESHOLD = 0.75
COMMON_WORDS = ("the of and to a in is that for it as was with be by on not he this are or his from at "
                "which but have an they you were her she there been one all we their has would when if "
                "so no will can more other its our into only some could them time two may then do first").split()
BOILERPLATE = [
    "Accept all cookies to continue browsing this site and agree to our privacy policy and terms of use",
    "Sign up for our newsletter to get the latest stories delivered straight to your inbox every week",
    "Share this article on social media or send it to a friend who might find it useful today",
]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-docs", type=int, default=3000, help="distinct documents in the quality corpus")
    parser.add_argument("--planted-fraction", type=float, default=0.5, help="base documents that get a variant")
    parser.add_argument("--spread", default="0.5,0.95", help="target Jaccard range of the variants")
    parser.add_argument("--verify-thresholds", default="0.7,0.72,0.74,0.75,0.76,0.78,0.8",
                        help="verify_threshold values compared with the default bottom-k sketch")
    parser.add_argument("--signature-thresholds", default="0.74,0.75,0.76",
                        help="verify_threshold values compared with the signature estimate (verify_sketch_size 0)")
    parser.add_argument("--sketch-sizes", default="128,256,512,1024",
                        help="verify_sketch_size values compared at verify_threshold 0.75")
    parser.add_argument("--throughput-docs", type=int, default=500, help="~3 KB documents timed for throughput")
    parser.add_argument("--peer-docs", type=int, default=200, help="of those, how many datatrove signs")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per library")
    parser.add_argument("--no-peer", action="store_true", help="skip datatrove")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- corpus generation


def make_vocabulary(rng: np.random.Generator, size: int) -> tuple[list[str], np.ndarray]:
    """Words and Zipf probabilities (exponent 1.07): common English words first, then made-up ones."""
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["ing", "er", "ion", "ly", "ed"]
    words = list(COMMON_WORDS)
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choice(syllables, size=int(rng.integers(1, 5))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    weights = 1.0 / np.arange(1, size + 1) ** 1.07
    return words, weights / weights.sum()


def make_tokens(rng: np.random.Generator, vocab: list[str], probs: np.ndarray, num_words: int) -> list[str]:
    """A document as tokens: words, "." and "," as their own tokens, "\\n\\n" between paragraphs."""
    tokens: list[str] = []
    ids = rng.choice(len(vocab), size=num_words, p=probs)
    sentence_left, sentences_in_paragraph = int(rng.integers(8, 25)), 0
    for word_id in ids:
        tokens.append(vocab[word_id] if rng.random() > 0.01 else str(int(rng.integers(1, 3000))))
        sentence_left -= 1
        if sentence_left == 0:
            tokens.append(".")
            sentence_left, sentences_in_paragraph = int(rng.integers(8, 25)), sentences_in_paragraph + 1
            if sentences_in_paragraph == 5:
                tokens.append("\n\n")
                sentences_in_paragraph = 0
        elif rng.random() < 0.05:
            tokens.append(",")
    return tokens


def render(tokens: list[str]) -> str:
    """Tokens to text: punctuation attached to the word before it, sentences capitalised."""
    pieces: list[str] = []
    capitalise = True
    for token in tokens:
        if token in (".", ","):
            pieces.append(token)
            capitalise = token == "."
        elif token == "\n\n":
            pieces.append("\n\n")
        else:
            if pieces and pieces[-1] != "\n\n":
                pieces.append(" ")
            pieces.append(token.capitalize() if capitalise else token)
            capitalise = False
    return "".join(pieces)


def shingles_of_words(words: list[str], size: int = 5) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + size]) for i in range(max(1, len(words) - size + 1))}


def shingle_set(text: str) -> set[tuple[str, ...]]:
    """The shingles the step sees: FineWeb normalisation, word 5-grams."""
    return shingles_of_words(normalize_text(text, strip_punctuation=True, normalize_digits=True).split())


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def words_only(tokens: list[str]) -> list[str]:
    return normalize_text(" ".join(t for t in tokens if t not in (".", ",", "\n\n")),
                          normalize_digits=True).split()


def edited(tokens: list[str], edits: list[tuple[str, float, str]], count: int) -> list[str]:
    """Apply the first ``count`` edits (substitute / insert / delete at a relative position)."""
    out = list(tokens)
    for kind, where, word in edits[:count]:
        position = min(int(where * len(out)), len(out) - 1)
        if kind == "substitute":
            out[position] = word
        elif kind == "insert":
            out.insert(position, word)
        elif len(out) > 1:
            del out[position]
    return out


def plant_variant(rng: np.random.Generator, tokens: list[str], target: float, vocab: list[str],
                  probs: np.ndarray) -> list[str]:
    """Edit ``tokens`` until the word 5-gram Jaccard with the original is as close to ``target`` as it gets."""
    kinds = rng.choice(["substitute", "insert", "delete"], size=len(tokens), p=[0.7, 0.15, 0.15])
    new_words = rng.choice(len(vocab), size=len(tokens), p=probs)
    edits = [(str(k), float(rng.random()), vocab[w]) for k, w in zip(kinds, new_words)]
    original = shingles_of_words(words_only(tokens))

    def similarity(count: int) -> float:
        return jaccard(original, shingles_of_words(words_only(edited(tokens, edits, count))))

    low, high = 0, len(edits)  # smallest edit count whose similarity is <= target (nearly monotone)
    while low < high:
        middle = (low + high) // 2
        if similarity(middle) > target:
            low = middle + 1
        else:
            high = middle
    best = min((c for c in (low - 1, low) if c >= 0), key=lambda c: abs(similarity(c) - target))
    return edited(tokens, edits, best)


def build_quality_corpus(args: argparse.Namespace) -> tuple[list[Document], list[tuple[str, str]]]:
    """Shuffled base documents and planted variants; returns docs and the planted (base, variant) id pairs."""
    rng = np.random.default_rng(args.seed)
    vocab, probs = make_vocabulary(rng, 30_000)
    low, high = (float(x) for x in args.spread.split(","))
    docs: list[Document] = []
    planted: list[tuple[str, str]] = []
    for index in range(args.base_docs):
        tokens = make_tokens(rng, vocab, probs, int(rng.integers(150, 800)))
        if rng.random() < 0.15:  # shared boilerplate must not make unrelated pages duplicates
            tokens = BOILERPLATE[int(rng.integers(len(BOILERPLATE)))].lower().split() + ["."] + tokens
        base_id = f"base{index}"
        docs.append(Document(base_id, render(tokens)))
        if rng.random() < args.planted_fraction:
            variant = plant_variant(rng, tokens, float(rng.uniform(low, high)), vocab, probs)
            docs.append(Document(f"variant{index}", render(variant)))
            planted.append((base_id, f"variant{index}"))
    order = rng.permutation(len(docs))  # a variant may come before its base
    return [docs[i] for i in order], planted


# --------------------------------------------------------------------------- (a) throughput


def plain_numpy_signature(text: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The textbook numpy MinHash (as in text-dedup): sha1 per shingle in Python, one (N, 112) matrix.

    REFERENCE.md puts this kind of implementation at ~1,000 docs/s per core on our machines,
    so its speed in the same process calibrates ours when the shared machine is loaded.
    (``a * h`` wraps modulo 2**64 before the ``mod p``, as in that implementation.)
    """
    words = normalize_text(text, strip_punctuation=True, normalize_digits=True).split()
    grams = [" ".join(words[i:i + 5]) for i in range(max(1, len(words) - 4))]
    hashes = np.array([int.from_bytes(hashlib.sha1(g.encode()).digest()[:4], "little") for g in grams],
                      dtype=np.uint64)
    with np.errstate(over="ignore"):
        return ((hashes[:, None] * a + b) % np.uint64(MERSENNE_PRIME)).min(axis=0)


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed + 1)
    vocab, probs = make_vocabulary(rng, 30_000)
    texts = [render(make_tokens(rng, vocab, probs, 560)) for _ in range(args.throughput_docs)]
    docs = [Document(f"t{i}", text) for i, text in enumerate(texts)]
    step = MinHashDedup(MinHashDedupOptions())
    no_sketch = MinHashDedup(MinHashDedupOptions(verify_threshold=None))
    peer = None
    if not args.no_peer:
        from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
        from datatrove.utils.hashing import HashConfig

        peer = MinhashDedupSignature(output_folder=tempfile.mkdtemp(),
                                     config=MinhashConfig(hash_config=HashConfig(precision=64, hash_fc="sha1")))
        peer.get_signature(peer.get_shingles(texts[0]))  # loads its word tokenizer outside the timing
    ours, bare, plain, theirs = [], [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for doc in docs:
            step.fingerprint(doc)
        ours.append(len(docs) / (time.perf_counter() - start))
        start = time.perf_counter()
        for doc in docs:
            no_sketch.fingerprint(doc)
        bare.append(len(docs) / (time.perf_counter() - start))
        start = time.perf_counter()
        for text in texts:
            plain_numpy_signature(text, step.perm_a, step.perm_b)
        plain.append(len(texts) / (time.perf_counter() - start))
        if peer is not None:
            start = time.perf_counter()
            for text in texts[:args.peer_docs]:
                peer.get_signature(peer.get_shingles(text))
            theirs.append(min(args.peer_docs, len(texts)) / (time.perf_counter() - start))
    result = {"mean_doc_bytes": round(statistics.mean(len(t.encode()) for t in texts)),
              "lmforge_docs_per_s": round(statistics.median(ours), 1),
              "lmforge_no_sketch_docs_per_s": round(statistics.median(bare), 1),
              "plain_numpy_docs_per_s": round(statistics.median(plain), 1)}
    result["lmforge_over_plain_numpy"] = round(result["lmforge_docs_per_s"] / result["plain_numpy_docs_per_s"], 2)
    if theirs:
        result["datatrove_docs_per_s"] = round(statistics.median(theirs), 1)
        result["lmforge_over_datatrove"] = round(result["lmforge_docs_per_s"] / result["datatrove_docs_per_s"], 2)
    return result


# --------------------------------------------------------------------------- (b) quality


def clusters_of(decisions: dict[DocRef, str], refs: dict[DocRef, str]) -> dict[str, str]:
    """doc id -> id of the kept document of its cluster (itself when kept)."""
    kept_of = {doc_id: doc_id for doc_id in refs.values()}
    for ref, kept in decisions.items():
        kept_of[refs[ref]] = kept
    return kept_of


def parse_thresholds(text: str) -> list[Optional[float]]:
    return [None if value.strip().lower() == "none" else float(value) for value in text.split(",")]


def setting_name(threshold: Optional[float], sketch_size: int) -> str:
    """'none', 'sig@0.75' (signature estimate) or 'k512@0.75' (bottom-k sketch)."""
    if threshold is None:
        return "none"
    return f"sig@{threshold}" if sketch_size == 0 else f"k{sketch_size}@{threshold}"


def with_sketch_size(fingerprints: list, sketch_size: int) -> list:
    """The fingerprints with sketches cut to ``sketch_size`` values: the bottom-k of a bottom-K sketch (k <= K)."""
    return [(ref, MinHashFingerprint(fp.doc_id, fp.band_keys, fp.signature, fp.sketch[:4 * sketch_size]))
            for ref, fp in fingerprints]


def evaluate(threshold: Optional[float], sketch_size: int, fingerprints: list, refs: dict[DocRef, str],
             shingles: dict[str, set], planted: list[tuple[str, str]], truth_of_planted: dict,
             true_pairs: set, num_bands: int = 14, rows_per_band: int = 8) -> dict[str, Any]:
    """Run ``decide`` with one verification setting; score predicted pairs against the true Jaccard."""
    step = MinHashDedup(MinHashDedupOptions(verify_threshold=threshold, verify_sketch_size=sketch_size,
                                            num_bands=num_bands, rows_per_band=rows_per_band))
    if threshold is not None and sketch_size > 0:
        fingerprints = with_sketch_size(fingerprints, sketch_size)
    start = time.perf_counter()
    decisions = step.decide(fingerprints)
    decide_seconds = time.perf_counter() - start
    kept_of = clusters_of(decisions, refs)
    members: dict[str, list[str]] = {}
    for doc_id, kept in kept_of.items():
        members.setdefault(kept, []).append(doc_id)
    predicted = {frozenset((a, b)) for group in members.values() for i, a in enumerate(group) for b in group[i + 1:]}
    true_positive = sum(1 for pair in predicted if jaccard(*(shingles[d] for d in pair)) >= TRUTH_THRESHOLD)
    precision = true_positive / len(predicted) if predicted else 1.0
    recall = len(predicted & true_pairs) / len(true_pairs) if true_pairs else 1.0
    detected = {pair: kept_of[pair[0]] == kept_of[pair[1]] for pair in planted}
    # The same scores leaving out planted pairs within 0.1 of the threshold, where a 112-value
    # estimate (standard deviation ~0.04 at s = 0.75) cannot be sure either way.
    clear = [p for p, s in truth_of_planted.items() if abs(s - TRUTH_THRESHOLD) >= 0.1]
    unplanted = len(predicted - {frozenset(p) for p in planted})
    clear_tp = sum(1 for p in clear if detected[p] and truth_of_planted[p] >= TRUTH_THRESHOLD)
    clear_fp = sum(1 for p in clear if detected[p] and truth_of_planted[p] < TRUTH_THRESHOLD) + unplanted
    clear_fn = sum(1 for p in clear if not detected[p] and truth_of_planted[p] >= TRUTH_THRESHOLD)
    return {"layout": f"{num_bands}x{rows_per_band}", "setting": setting_name(threshold, sketch_size),
            "verify_threshold": threshold, "verify_sketch_size": sketch_size, "predicted_pairs": len(predicted),
            "true_pairs": len(true_pairs), "true_positive_pairs": true_positive,
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1_of(precision, recall), 4),
            "f1_outside_0.65_0.85": round(f1_of(clear_tp / max(1, clear_tp + clear_fp),
                                                clear_tp / max(1, clear_tp + clear_fn)), 4),
            "dropped_docs": len(decisions), "decide_s": round(decide_seconds, 3), "_detected": detected}


def f1_of(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def both_fingerprint(step: MinHashDedup, doc: Document, sketch_size: int) -> MinHashFingerprint:
    """A fingerprint carrying the signature's low 32 bits and a bottom-``sketch_size`` sketch,
    so that every verification setting can be scored on the same band keys."""
    shingles = step.shingle_hashes(doc.text)
    if shingles.size == 0:
        return MinHashFingerprint(doc.id, b"")
    signature = minhash_signature(shingles, step.perm_a, step.perm_b)
    return MinHashFingerprint(doc.id, band_keys(signature, 14, 8).tobytes(), signature.astype(np.uint32).tobytes(),
                              bottom_k_sketch(shingles, sketch_size).tobytes())


def quality(args: argparse.Namespace) -> dict[str, Any]:
    docs, planted = build_quality_corpus(args)
    num_shards = 4
    refs = {DocRef(i % num_shards, i // num_shards): doc.id for i, doc in enumerate(docs)}
    by_id = {doc.id: doc for doc in docs}
    default_options = MinHashDedupOptions()
    signer = MinHashDedup(default_options)
    start = time.perf_counter()
    for doc_id in refs.values():
        signer.fingerprint(by_id[doc_id])  # timed only: the default worker pass, sketch included
    sign_seconds = time.perf_counter() - start
    sketch_sizes = [int(k) for k in args.sketch_sizes.split(",")]
    largest = max(sketch_sizes + [default_options.verify_sketch_size])
    fingerprints = [(ref, both_fingerprint(signer, by_id[doc_id], largest)) for ref, doc_id in refs.items()]
    shingles = {doc.id: shingle_set(doc.text) for doc in docs}
    truth_of_planted = {pair: jaccard(shingles[pair[0]], shingles[pair[1]]) for pair in planted}
    true_pairs = {frozenset(p) for p, s in truth_of_planted.items() if s >= TRUTH_THRESHOLD}

    default_k = default_options.verify_sketch_size
    combos = [(None, 0)] + [(t, 0) for t in parse_thresholds(args.signature_thresholds)]
    combos += [(t, default_k) for t in parse_thresholds(args.verify_thresholds)]
    combos += [(0.75, k) for k in sketch_sizes if (0.75, k) not in combos]
    settings = [evaluate(threshold, k, fingerprints, refs, shingles, planted, truth_of_planted, true_pairs)
                for threshold, k in combos]
    # Another split of the same 112 values: 28 bands of 4 rows make almost every pair above 0.6
    # a candidate and leave the thresholding to verification (bands re-keyed from the signature).
    rebanded = [(ref, MinHashFingerprint(
        fp.doc_id, band_keys(np.frombuffer(fp.signature, np.uint32), 28, 4).tobytes() if fp.band_keys else b"",
        fp.signature, fp.sketch)) for ref, fp in fingerprints]
    alternatives = [evaluate(0.75, k, rebanded, refs, shingles, planted, truth_of_planted, true_pairs, 28, 4)
                    for k in (0, default_k)]
    for alternative in alternatives:
        del alternative["_detected"]

    buckets = []
    edges = [round(0.5 + 0.05 * i, 2) for i in range(10)] + [1.0001]
    for low, high in zip(edges, edges[1:]):
        pairs = [p for p, s in truth_of_planted.items() if low <= s < high]
        if not pairs:
            continue
        row = {"bucket": f"{low:.2f}-{min(high, 1.0):.2f}", "pairs": len(pairs),
               "theory": round(statistics.mean(candidate_probability(truth_of_planted[p], 14, 8) for p in pairs), 3)}
        for setting in settings:
            if setting["verify_sketch_size"] == default_k or setting["setting"] in ("none", "sig@0.75"):
                row[f"rate_{setting['setting']}"] = round(sum(setting["_detected"][p] for p in pairs) / len(pairs), 3)
        buckets.append(row)
    below = [s for s in truth_of_planted.values() if s < 0.5]
    for setting in settings:
        del setting["_detected"]
    # What unverified 14 x 8 LSH is expected to score on exactly these pairs: each planted
    # pair is flagged with probability 1-(1-s^8)^14 (unrelated pairs assumed never flagged).
    flag = {p: candidate_probability(s, 14, 8) for p, s in truth_of_planted.items()}
    expected_tp = sum(flag[p] for p, s in truth_of_planted.items() if s >= TRUTH_THRESHOLD)
    expected_fp = sum(flag[p] for p, s in truth_of_planted.items() if s < TRUTH_THRESHOLD)
    expected_precision = expected_tp / (expected_tp + expected_fp)
    expected_recall = expected_tp / max(1, len(true_pairs))
    theory = {"precision": round(expected_precision, 4), "recall": round(expected_recall, 4),
              "f1": round(2 * expected_precision * expected_recall / (expected_precision + expected_recall), 4)}
    return {"docs": len(docs), "planted_pairs": len(planted), "planted_below_0.5": len(below),
            "theory_unverified": theory, "alternative_layout": alternatives,
            "sign_docs_per_s": round(len(docs) / sign_seconds, 1), "settings": settings, "buckets": buckets}


# --------------------------------------------------------------------------- report


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    speed = throughput(args)
    print(f"(a) MinHash signatures, one core, {args.throughput_docs} docs of ~{speed['mean_doc_bytes']} bytes "
          f"(14 bands x 8 rows, 5-grams)")
    print(f"  lmforge minhash_dedup.fingerprint  {speed['lmforge_docs_per_s']:>9.1f} docs/s   "
          f"(default: signature + bottom-512 sketch)")
    print(f"  ... without the sketch (verify null) {speed['lmforge_no_sketch_docs_per_s']:>7.1f} docs/s")
    print(f"  plain numpy MinHash (sha1/shingle) {speed['plain_numpy_docs_per_s']:>9.1f} docs/s   "
          f"lmforge / plain {speed['lmforge_over_plain_numpy']:.2f}x")
    if "datatrove_docs_per_s" in speed:
        print(f"  datatrove get_shingles+signature   {speed['datatrove_docs_per_s']:>9.1f} docs/s "
              f"(sha1-64, {args.peer_docs} docs)")
        print(f"  ratio lmforge / datatrove          {speed['lmforge_over_datatrove']:>9.2f}x")

    report = quality(args)
    print(f"\n(b) quality: {report['docs']} docs, {report['planted_pairs']} planted pairs "
          f"(target Jaccard {args.spread}), truth = true Jaccard >= {TRUTH_THRESHOLD}")
    print(f"  {'bands x rows':>12} {'verification':>16} {'pred pairs':>10} {'true pairs':>10} {'precision':>9} "
          f"{'recall':>7} {'F1':>7} {'F1 clear':>8} {'dropped':>8}")
    defaults = MinHashDedupOptions()
    for s in report["settings"] + report["alternative_layout"]:
        name = "none (FineWeb)" if s["verify_threshold"] is None else s["setting"]
        if (s["verify_threshold"], s["verify_sketch_size"], s["layout"]) == (
                defaults.verify_threshold, defaults.verify_sketch_size, "14x8"):
            name += " *"
        print(f"  {s['layout']:>12} {name:>16} {s['predicted_pairs']:>10} {s['true_pairs']:>10} {s['precision']:>9.4f} "
              f"{s['recall']:>7.4f} {s['f1']:>7.4f} {s['f1_outside_0.65_0.85']:>8.4f} {s['dropped_docs']:>8}")
    theory = report["theory_unverified"]
    print(f"  {'14x8':>12} {'theory, none':>16} {'':>10} {'':>10} {theory['precision']:>9.4f} {theory['recall']:>7.4f} "
          f"{theory['f1']:>7.4f}   (expected from 1-(1-s^8)^14 on these pairs)")
    print("  (* = minhash_dedup's default; sig@t = signature estimate >= t (verify_sketch_size 0), k512@t = "
          "bottom-512 sketch estimate >= t;\n   F1 clear = leaving out planted pairs with true Jaccard in 0.65..0.85)")
    rate_keys = [k for k in report["buckets"][0] if k.startswith("rate_")] if report["buckets"] else []
    print("\n  detection rate per true-Jaccard bucket (theory = mean of 1-(1-s^8)^14 over the bucket)")
    print(f"  {'bucket':>10} {'pairs':>6} {'theory':>7} " + " ".join(f"{k[5:]:>9}" for k in rate_keys))
    for row in report["buckets"]:
        print(f"  {row['bucket']:>10} {row['pairs']:>6} {row['theory']:>7.3f} "
              + " ".join(f"{row[k]:>9.3f}" for k in rate_keys))
    default = next(s for s in report["settings"] if (s["verify_threshold"], s["verify_sketch_size"]) ==
                   (defaults.verify_threshold, defaults.verify_sketch_size))
    print(json.dumps({"benchmark": "dedup", "throughput": speed, "quality": report,
                      "default_f1": default["f1"], "default_precision": default["precision"],
                      "default_recall": default["recall"]}))


if __name__ == "__main__":
    main()
