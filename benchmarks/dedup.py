"""MinHash dedup: signature throughput against datatrove, and detection quality on planted near-duplicates.

(a) Throughput: ``minhash_dedup``'s worker pass (``fingerprint``: normalise, shingle, 112
    permutations, 14 band keys, and with the default options the bottom-512 sketch that
    verification uses; also timed without it) on ~3 KB documents, one core, against a plain numpy MinHash
    (sha1 per shingle, one matrix, as in text-dedup: a common baseline of ~1,000 docs/s per core) and datatrove's
    ``MinhashDedupSignature.get_shingles`` + ``get_signature`` on the same documents, as datatrove
    users run it: its default ``MinhashConfig`` (5-grams, 14 x 8, ``HashConfig()`` = xxhash
    64-bit, which needs ``xxhash<4``: datatrove's own "processing" extra pins it) and its
    English word tokenizer (spaCy's blank "en", no model download). Runs alternate between the
    libraries; each figure is the median, each ratio the median of the per-run ratios.
    Equal work: the two hash functions differ, so signature values are not comparable; what
    is checked is that both sign the same 5-grams. Every library is timed on the documents
    whose normalised word list is the same for both (lmforge's with each digit run as one "0",
    datatrove's number rule); spaCy splits a few apostrophe-less contractions ("weve"), so a
    made-up word leaves out about 1 document in 500. After timing, the 5-gram counts of the
    two must be equal and every signature 112 values. If those fail, more than 1% of the
    documents were left out, or ``--peer-docs`` timed datatrove on fewer documents, no speed
    ratio is printed ("outputs differ", ``benchmarks/equal_work.py``) and the run exits 1.
(b) Quality against threshold-free ground truth: origin documents of three kinds, Zipf
    generated text (some with shared boilerplate), chunks of the Python standard library's
    docstrings (real English prose and code examples, deduplicated), and "templated" pages
    (a site's shared header and footer around a short unique body of 15-400 words, where
    distinct pages can have a high Jaccard), plus one planted copy for a fraction of them,
    made by word-level edits (50% substitutions, 25% insertions, 25% deletions at random
    positions) at a recorded edit rate (edits / words of the origin). Truth: two documents are
    duplicates iff they share an origin; no Jaccard threshold is involved. Per edit rate:
    recall = the fraction of planted copies merged with their origin (one of the two removed),
    for lmforge's ``minhash_dedup`` (default options; also unverified) and datatrove's
    four-stage MinHash pipeline (signature, buckets, cluster, filter, default config, run
    offline on local folders). Precision = removed documents whose cluster's kept document
    has the same origin / removed documents; wrong removals are also counted when the removed
    document was never planted, and origins lost outright (every member removed). The true
    5-gram Jaccard of pairs is shown for information only.
(c) Legacy, threshold-based: a generated corpus of base documents (Zipf-distributed words, sentences,
    paragraphs, some shared boilerplate) plus planted variants edited (substitutions,
    insertions, deletions) to hit target Jaccard similarities spread over ``--spread``;
    the true Jaccard of each pair is measured on the same normalised 5-gram shingle sets the
    step uses. Ground truth: pairs with true Jaccard >= 0.75 (FineWeb's target), the same
    threshold lmforge's verifier checks, so lmforge's verified settings win there by
    construction; (b) is the fair comparison. Predicted:
    pairs in the same cluster after ``decide``. Reports pair precision, recall and F1 with
    no verification (FineWeb), with the Jaccard estimated from the 112-value signature
    (``verify_sketch_size: 0``, the previous default) and from bottom-k sketches (the
    default, k = 512; other k at 0.75), for several ``verify_threshold`` values, and per
    similarity bucket the detection rate next to the theoretical 1 - (1 - s^8)^14.

Prints the CPU, package versions and tables, then one JSON line with every figure. Runs
without network. Peers: ``pip install datatrove "xxhash<4" spacy``.

    OMP_NUM_THREADS=1 python benchmarks/dedup.py
    python benchmarks/dedup.py --base-docs 5000 --no-peer
    python benchmarks/dedup.py --no-threshold-table   # (a) and (b) only
    python benchmarks/dedup.py --perturb-peer --no-threshold-table   # self-check: no ratio, exit 1
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the per-core figure says
os.environ.setdefault("TQDM_DISABLE", "1")  # datatrove's cluster stage draws a progress bar

import argparse
import ast
import hashlib
import importlib.metadata
import json
import platform
import re
import statistics
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from equal_work import check, cpu_name, exit_status, format_ratio  # benchmarks/equal_work.py
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
    parser.add_argument("--peer-docs", type=int, default=None,
                        help="of those, how many datatrove signs (default: all of them)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per library")
    parser.add_argument("--no-peer", action="store_true", help="skip datatrove")
    parser.add_argument("--perturb-peer", action="store_true",
                        help="self-check, not a measurement: time datatrove on 4-grams, so (a) must print no "
                             "ratio and the run exit 1")
    parser.add_argument("--origin-docs", default="1500,600,200",
                        help="(b) origin documents: generated, stdlib docstring chunks (at most), templated")
    parser.add_argument("--copy-fraction", type=float, default=0.5, help="(b) origins that get one edited copy")
    parser.add_argument("--edit-rates", default="0.01,0.02,0.03,0.05,0.075,0.1,0.2,0.3,0.5",
                        help="(b) word edit rates of the planted copies (edits / origin words), used in turn")
    parser.add_argument("--no-threshold-table", action="store_true",
                        help="skip (c), the legacy table whose truth is true Jaccard >= 0.75")
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

    Implementations of this kind run at ~1,000 docs/s per core on 2-core VMs like ours,
    so its speed in the same process calibrates ours when the shared machine is loaded.
    (``a * h`` wraps modulo 2**64 before the ``mod p``, as in that implementation.)
    """
    words = normalize_text(text, strip_punctuation=True, normalize_digits=True).split()
    grams = [" ".join(words[i:i + 5]) for i in range(max(1, len(words) - 4))]
    hashes = np.array([int.from_bytes(hashlib.sha1(g.encode()).digest()[:4], "little") for g in grams],
                      dtype=np.uint64)
    with np.errstate(over="ignore"):
        return ((hashes[:, None] * a + b) % np.uint64(MERSENNE_PRIME)).min(axis=0)


def package_versions() -> dict[str, Optional[str]]:
    versions: dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in ("numpy", "datatrove", "xxhash", "spacy"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def datatrove_signer(output_folder: str):
    """datatrove's stage-1 step exactly as its users build it: ``MinhashConfig()`` defaults
    (5-grams, 14 buckets x 8 hashes, seed 1, xxhash 64-bit), English word tokenizer."""
    from loguru import logger

    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

    logger.disable("datatrove")
    return MinhashDedupSignature(output_folder=output_folder)


def datatrove_words(signer, text: str) -> list[str]:
    """The words datatrove shingles: ``simplify_text`` then its word tokenizer (``get_shingles``' input)."""
    from datatrove.utils.text import simplify_text

    return signer.word_tokenizer.word_tokenize(simplify_text(text, signer.config.norm_config))


_DIGIT_RUN = re.compile("0+")


def lmforge_words(text: str) -> list[str]:
    """The words ``minhash_dedup`` shingles, with each run of (normalised) digits as one "0",
    which is what datatrove's number rule makes of an integer."""
    return _DIGIT_RUN.sub("0", normalize_text(text, strip_punctuation=True, normalize_digits=True)).split()


def word_list_mismatches(signer, texts: list[str]) -> list[int]:
    """Indices of the texts whose 5-grams lmforge and datatrove would hash differently (different word lists).

    The hash functions differ (lmforge's polynomial + splitmix64 against xxhash64), so the
    signatures' values cannot be compared; the word lists they are computed from can. spaCy's
    tokenizer splits a few apostrophe-less contractions ("weve" -> "we", "ve"), which a made-up
    word of the generated text can happen to be.
    """
    return [i for i, text in enumerate(texts) if lmforge_words(text) != datatrove_words(signer, text)]


MAX_LEFT_OUT = 0.01  # more documents than this shingled differently: no speed ratio at all


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed + 1)
    vocab, probs = make_vocabulary(rng, 30_000)
    texts = [render(make_tokens(rng, vocab, probs, 560)) for _ in range(args.throughput_docs)]
    peer, check_info = None, None
    if not args.no_peer:
        # Equal work: every library is timed on the same documents, those whose 5-grams both
        # lmforge and datatrove shingle alike (this also loads datatrove's tokenizer untimed).
        peer = datatrove_signer(tempfile.mkdtemp())
        if args.perturb_peer:  # self-check of the equal-work test: 4-grams, so the 5-gram counts differ
            peer.config.n_grams = 4
        differing = word_list_mismatches(peer, texts)
        left_out = set(differing)
        examples = [f"doc {i}: " + " ".join(word_diff(lmforge_words(texts[i]), datatrove_words(peer, texts[i])))
                    for i in differing[:3]]
        check_info = {"generated_docs": len(texts), "word_lists_differ": len(differing), "examples": examples}
        texts = [text for i, text in enumerate(texts) if i not in left_out]
    docs = [Document(f"t{i}", text) for i, text in enumerate(texts)]
    peer_texts = texts[:args.peer_docs] if args.peer_docs else texts
    step = MinHashDedup(MinHashDedupOptions())
    no_sketch = MinHashDedup(MinHashDedupOptions(verify_threshold=None))
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
            for text in peer_texts:
                peer.get_signature(peer.get_shingles(text))
            theirs.append(len(peer_texts) / (time.perf_counter() - start))
    result = {"mean_doc_bytes": round(statistics.mean(len(t.encode()) for t in texts)),
              "lmforge_docs_per_s": round(statistics.median(ours), 1),
              "lmforge_no_sketch_docs_per_s": round(statistics.median(bare), 1),
              "plain_numpy_docs_per_s": round(statistics.median(plain), 1)}
    result["lmforge_over_plain_numpy"] = round(statistics.median(o / p for o, p in zip(ours, plain)), 2)
    result["timed_docs"] = len(texts)
    if theirs:
        # After the timing, the outputs themselves: one 112-value signature per document from
        # each, over the same number of 5-grams (the same word lists, checked above).
        check_info["signatures_not_14x8"] = sum(1 for text in peer_texts
                                                if len(peer.get_signature(peer.get_shingles(text))) != 14
                                                or step.signature(text).size != 112)
        check_info["shingles_lmforge"] = sum(int(step.shingle_hashes(text).size) for text in peer_texts)
        check_info["shingles_datatrove"] = sum(int(peer.get_shingles(text).size) for text in peer_texts)
        # equal_work.check prints "outputs differ: ...; no ratio printed" for each that fails.
        checks = [check("fraction of documents left out (word lists differ)",
                        check_info["word_lists_differ"] / check_info["generated_docs"], MAX_LEFT_OUT),
                  check("5-grams signed, |lmforge - datatrove|",
                        abs(check_info["shingles_lmforge"] - check_info["shingles_datatrove"]), 0),
                  check("signatures not 112 values", check_info["signatures_not_14x8"], 0),
                  check("documents timed by lmforge only (--peer-docs)", len(texts) - len(peer_texts), 0)]
        result["equal_outputs"] = all(c.equal for c in checks)
        result["datatrove_config"] = str(peer.config)
        result["datatrove_docs"] = len(peer_texts)
        result["datatrove_docs_per_s"] = round(statistics.median(theirs), 1)
        result["same_work"] = check_info
        # A ratio only when both did the same work: the same 5-grams of the same documents.
        # The median of the per-run ratios: runs alternate, so each ratio pairs two timings taken
        # a few seconds apart, which cancels most of a shared machine's load drift.
        ratio = round(statistics.median(o / t for o, t in zip(ours, theirs)), 2)
        result["lmforge_over_datatrove"] = ratio if result["equal_outputs"] else None
    return result


def word_diff(ours: list[str], theirs: list[str]) -> list[str]:
    """The first place two word lists part, as 'ours -> theirs' (for the report)."""
    first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    return [" ".join(ours[first:first + 2]), "->", " ".join(theirs[first:first + 3])]


# --------------------------------------------------------------------------- (b) planted copies

# Standard-library folders left out: tests (fixtures repeat each other), codecs generated from
# one template (encodings/*), and vendored or demo code.
STDLIB_SKIP = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "ensurepip", "turtledemo",
               "encodings", "__pycache__"}
_DOCSTRING_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def stdlib_docstring_docs(rng: np.random.Generator, max_docs: int, min_words: int = 60) -> list[str]:
    """Documents of 150-800 words made of consecutive docstrings of one standard-library module.

    Read with ``ast`` from the interpreter's own source files (nothing is imported, nothing
    downloaded); a docstring whose whitespace-normalised text was already used is skipped,
    so the pool holds no verbatim repeats. Modules are visited in a seeded random order.
    Empty when the interpreter ships no source.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    files: list[Path] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in STDLIB_SKIP)
        files += [Path(directory, name) for name in sorted(names) if name.endswith(".py")]
    seen: set[str] = set()
    docs: list[str] = []
    for index in rng.permutation(len(files)):
        try:
            tree = ast.parse(files[index].read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        target, parts, words = int(rng.integers(150, 800)), [], 0
        for node in ast.walk(tree):
            text = ast.get_docstring(node) if isinstance(node, _DOCSTRING_OWNERS) else None
            key = " ".join(text.split()) if text else ""
            if not key or key in seen:
                continue
            seen.add(key)
            parts.append(text)
            words += len(key.split())
            if words >= target:
                docs.append("\n\n".join(parts))
                target, parts, words = int(rng.integers(150, 800)), [], 0
                if len(docs) >= max_docs:
                    return docs
        if words >= min_words:
            docs.append("\n\n".join(parts))
            if len(docs) >= max_docs:
                return docs
    return docs


def templated_docs(rng: np.random.Generator, vocab: list[str], probs: np.ndarray, count: int,
                   num_templates: int = 8) -> list[str]:
    """Pages of a few sites: a site's fixed header (40-80 words) and footer (60-120 words) around
    a unique body of 15-400 words (log-uniform, so many are short). Two pages of one site
    with short bodies share most of their shingles without being copies of each other."""
    templates = [(render(make_tokens(rng, vocab, probs, int(rng.integers(40, 80)))),
                  render(make_tokens(rng, vocab, probs, int(rng.integers(60, 120))))) for _ in range(num_templates)]
    pages = []
    for index in range(count):
        header, footer = templates[index % num_templates]
        body_words = int(round(np.exp(rng.uniform(np.log(15), np.log(400)))))
        pages.append(f"{header}\n\n{render(make_tokens(rng, vocab, probs, body_words))}\n\n{footer}")
    return pages


def edited_copy(rng: np.random.Generator, text: str, rate: float, pool: np.ndarray) -> str:
    """``text`` with round(rate * words) word edits at uniformly random positions: 50% substitutions,
    25% insertions (both with a word drawn from ``pool``), 25% deletions. At least one edit."""
    words = text.split()
    count = max(1, int(round(rate * len(words))))
    kinds = rng.choice(3, size=count, p=[0.5, 0.25, 0.25])
    replacements = pool[rng.integers(len(pool), size=count)]
    for kind, replacement in zip(kinds, replacements):
        position = int(rng.integers(len(words)))
        if kind == 0:
            words[position] = str(replacement)
        elif kind == 1:
            words.insert(position, str(replacement))
        elif len(words) > 1:
            del words[position]
    return " ".join(words)


@dataclass
class PlantedCorpus:
    """Documents in corpus order, with each document's origin (its own id for an origin)."""

    docs: list[Document]
    origin: dict[str, str] = field(default_factory=dict)
    kind: dict[str, str] = field(default_factory=dict)  # generated / stdlib / templated
    copies: list[tuple[str, str, float]] = field(default_factory=list)  # (origin id, copy id, edit rate)


def build_planted_corpus(args: argparse.Namespace) -> PlantedCorpus:
    """Origins of three kinds; a ``--copy-fraction`` of each kind gets one edited copy, the edit
    rates taken in turn so that every rate has about as many copies of every kind."""
    rng = np.random.default_rng(args.seed + 2)
    vocab, probs = make_vocabulary(rng, 30_000)
    vocab_pool = np.array(vocab, dtype=object)[rng.choice(len(vocab), size=200_000, p=probs)]
    num_generated, max_stdlib, num_templated = (int(x) for x in args.origin_docs.split(","))
    generated = []
    for _ in range(num_generated):
        tokens = make_tokens(rng, vocab, probs, int(rng.integers(150, 800)))
        if rng.random() < 0.15:  # shared boilerplate, as in (c)
            tokens = BOILERPLATE[int(rng.integers(len(BOILERPLATE)))].lower().split() + ["."] + tokens
        generated.append(render(tokens))
    stdlib = stdlib_docstring_docs(rng, max_stdlib)
    stdlib_pool = np.array([word for text in stdlib for word in text.split()] or ["word"], dtype=object)
    templated = templated_docs(rng, vocab, probs, num_templated)
    rates = [float(x) for x in args.edit_rates.split(",")]
    corpus = PlantedCorpus([])
    for kind, texts, pool in (("generated", generated, vocab_pool), ("stdlib", stdlib, stdlib_pool),
                              ("templated", templated, vocab_pool)):
        with_copy = rng.permutation(len(texts))[:int(round(args.copy_fraction * len(texts)))]
        rate_of = {int(index): rates[turn % len(rates)] for turn, index in enumerate(with_copy)}
        for index, text in enumerate(texts):
            origin_id = f"{kind}{index}"
            corpus.docs.append(Document(origin_id, text))
            corpus.origin[origin_id], corpus.kind[origin_id] = origin_id, kind
            if index in rate_of:
                copy_id = f"{origin_id}.copy"
                corpus.docs.append(Document(copy_id, edited_copy(rng, text, rate_of[index], pool)))
                corpus.origin[copy_id], corpus.kind[copy_id] = origin_id, kind
                corpus.copies.append((origin_id, copy_id, rate_of[index]))
    corpus.docs = [corpus.docs[i] for i in rng.permutation(len(corpus.docs))]  # a copy may come first
    return corpus


def lmforge_kept_of(docs: list[Document], options: MinHashDedupOptions) -> tuple[dict[str, str], float]:
    """doc id -> id of the document its cluster keeps (itself when kept), and the seconds taken."""
    start = time.perf_counter()
    step = MinHashDedup(options)
    decisions = step.decide((DocRef(0, position), step.fingerprint(doc)) for position, doc in enumerate(docs))
    seconds = time.perf_counter() - start
    kept_of = {doc.id: doc.id for doc in docs}
    for ref, kept in decisions.items():
        kept_of[docs[ref.position].id] = kept
    return kept_of, seconds


def datatrove_kept_of(docs: list[Document]) -> tuple[dict[str, str], float]:
    """The same through datatrove's four MinHash stages with its default ``MinhashConfig``, on local
    temporary folders, in one process: signatures (one input task), 14 bucket tasks (one per
    bucket), clustering (with cluster ids saved) and the filter. Returns the same mapping as
    ``lmforge_kept_of``: a removed document maps to the member of its cluster the filter kept."""
    from datatrove.data import Document as PeerDocument
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter)

    peer_docs = [PeerDocument(text=doc.text, id=doc.id) for doc in docs]
    config = MinhashConfig()
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        datatrove_signer(f"{root}/signatures").run(iter(peer_docs), rank=0, world_size=1)
        for bucket in range(config.num_buckets):
            MinhashDedupBuckets(input_folder=f"{root}/signatures", output_folder=f"{root}/buckets",
                                config=config).run(rank=bucket, world_size=config.num_buckets)
        MinhashDedupCluster(input_folder=f"{root}/buckets", output_folder=f"{root}/remove", config=config,
                            save_cluster_id=True).run()
        kept_ids = {doc.id for doc in MinhashDedupFilter(input_folder=f"{root}/remove").run(
            iter(peer_docs), rank=0, world_size=1)}
        seconds = time.perf_counter() - start
        clusters_file = Path(root, "remove", "000000.clusters")
        pairs = (np.fromfile(clusters_file, dtype="<u4").reshape(-1, 2) if clusters_file.exists()
                 else np.empty((0, 2), dtype=np.uint32))  # (document index, cluster id) per clustered doc
    members: dict[int, list[str]] = {}
    for position, cluster in pairs.tolist():
        members.setdefault(cluster, []).append(docs[position].id)
    kept_of = {doc.id: doc.id for doc in docs}
    for group in members.values():
        kept = [doc_id for doc_id in group if doc_id in kept_ids]
        assert len(kept) == 1, f"datatrove kept {len(kept)} documents of one cluster"
        for doc_id in group:
            kept_of[doc_id] = kept[0]
    removed = {doc.id for doc in docs} - kept_ids
    assert removed == {d for d, k in kept_of.items() if d != k}, "removed documents outside any cluster"
    return kept_of, seconds


def score_planted(kept_of: dict[str, str], corpus: PlantedCorpus, shingles: dict[str, set],
                  rates: list[float]) -> dict[str, Any]:
    """Recall per edit rate and kind, precision, and what the wrong removals are."""
    origin = corpus.origin
    detected = {copy_id: kept_of[copy_id] == kept_of[origin_id] for origin_id, copy_id, _ in corpus.copies}
    per_rate = {}
    for rate in rates:
        copies = [c for _, c, r in corpus.copies if r == rate]
        per_rate[str(rate)] = {"copies": len(copies),
                               "recall": round(sum(detected[c] for c in copies) / len(copies), 4) if copies else None}
    per_kind = {}
    removed = [doc_id for doc_id, kept in kept_of.items() if kept != doc_id]
    wrong = [doc_id for doc_id in removed if origin[doc_id] != origin[kept_of[doc_id]]]
    planted_ids = {doc_id for pair in corpus.copies for doc_id in pair[:2]}
    for kind in ("generated", "stdlib", "templated"):
        copies = [c for _, c, _ in corpus.copies if corpus.kind[c] == kind]
        per_kind[kind] = {"docs": sum(1 for d in corpus.docs if corpus.kind[d.id] == kind), "copies": len(copies),
                          "recall": round(sum(detected[c] for c in copies) / len(copies), 4) if copies else None,
                          "removed": sum(1 for d in removed if corpus.kind[d] == kind),
                          "wrong_removals": sum(1 for d in wrong if corpus.kind[d] == kind)}
    members: dict[str, list[str]] = {}
    for doc_id in kept_of:
        members.setdefault(origin[doc_id], []).append(doc_id)
    lost = [o for o, group in members.items() if all(kept_of[d] != d for d in group)]
    wrong_jaccard = sorted(jaccard(shingles[d], shingles[kept_of[d]]) for d in wrong)
    precision = (len(removed) - len(wrong)) / len(removed) if removed else 1.0
    return {"removed": len(removed), "correct_removals": len(removed) - len(wrong), "precision": round(precision, 4),
            "recall_all_rates": round(sum(detected.values()) / max(1, len(detected)), 4),
            "wrong_removals": len(wrong),
            "wrong_removals_never_planted": sum(1 for d in wrong if d not in planted_ids),
            "origins_lost": len(lost),
            "wrong_removal_true_jaccard": {
                "min": round(wrong_jaccard[0], 3) if wrong else None,
                "median": round(statistics.median(wrong_jaccard), 3) if wrong else None,
                "at_least_0.75": sum(1 for j in wrong_jaccard if j >= TRUTH_THRESHOLD)},
            "per_rate": per_rate, "per_kind": per_kind}


def planted_quality(args: argparse.Namespace) -> dict[str, Any]:
    corpus = build_planted_corpus(args)
    rates = [float(x) for x in args.edit_rates.split(",")]
    by_id = {doc.id: doc for doc in corpus.docs}
    shingles = {doc.id: shingle_set(doc.text) for doc in corpus.docs}
    pair_jaccard = {c: jaccard(shingles[o], shingles[c]) for o, c, _ in corpus.copies}
    rate_info = {}
    for rate in rates:
        values = [pair_jaccard[c] for _, c, r in corpus.copies if r == rate]
        rate_info[str(rate)] = {
            "copies": len(values),
            "true_jaccard_mean": round(statistics.mean(values), 3) if values else None,
            "true_jaccard_range": [round(min(values), 3), round(max(values), 3)] if values else None,
            "lsh_theory": (round(statistics.mean(candidate_probability(v, 14, 8) for v in values), 3)
                           if values else None)}
    systems: dict[str, Any] = {}
    runs = [("lmforge", MinHashDedupOptions()), ("lmforge_unverified", MinHashDedupOptions(verify_threshold=None))]
    for name, options in runs:
        kept_of, seconds = lmforge_kept_of(corpus.docs, options)
        systems[name] = {**score_planted(kept_of, corpus, shingles, rates), "seconds": round(seconds, 2)}
    if not args.no_peer:
        kept_of, seconds = datatrove_kept_of(corpus.docs)
        systems["datatrove"] = {**score_planted(kept_of, corpus, shingles, rates), "seconds": round(seconds, 2)}
    kinds = {kind: sum(1 for d in corpus.docs if corpus.kind[d.id] == kind) for kind in ("generated", "stdlib",
                                                                                       "templated")}
    return {"docs": len(corpus.docs), "docs_per_kind": kinds, "copies": len(corpus.copies),
            "mean_words": round(statistics.mean(len(by_id[d].text.split()) for d in by_id)),
            "edit_rates": rate_info, "systems": systems}


# --------------------------------------------------------------------------- (c) legacy: truth = true Jaccard >= 0.75



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


def print_throughput(args: argparse.Namespace, speed: dict[str, Any]) -> None:
    print(f"(a) MinHash signatures, one core, {args.throughput_docs} docs of ~{speed['mean_doc_bytes']} bytes "
          f"(14 bands x 8 rows, 5-grams)")
    print(f"  lmforge minhash_dedup.fingerprint  {speed['lmforge_docs_per_s']:>9.1f} docs/s   "
          f"(default: signature + bottom-512 sketch)")
    print(f"  ... without the sketch (verify null) {speed['lmforge_no_sketch_docs_per_s']:>7.1f} docs/s")
    print(f"  plain numpy MinHash (sha1/shingle) {speed['plain_numpy_docs_per_s']:>9.1f} docs/s   "
          f"lmforge / plain {speed['lmforge_over_plain_numpy']:.2f}x")
    if "datatrove_docs_per_s" in speed:
        info = speed["same_work"]
        print(f"  datatrove get_shingles+signature   {speed['datatrove_docs_per_s']:>9.1f} docs/s   "
              f"(config {speed['datatrove_config']}, spaCy 'en' words; {speed['datatrove_docs']} docs)")
        print(f"  same work: {speed['timed_docs']} of {info['generated_docs']} generated docs timed, those whose words "
              f"both shingle alike ({info['word_lists_differ']} left out: {'; '.join(info['examples']) or '-'});")
        print(f"    5-grams signed: lmforge {info['shingles_lmforge']}, datatrove {info['shingles_datatrove']}; "
              f"signatures not 112 values: {info['signatures_not_14x8']}. The hash functions differ, so the "
              f"signature values are not compared.")
        ratio = speed["lmforge_over_datatrove"]
        print(f"  ratio lmforge / datatrove          {format_ratio(ratio) + ('x' if ratio else ''):>10}   "
              f"(median of per-run ratios; '-' = unequal work, not printed)")


def print_planted(args: argparse.Namespace, report: dict[str, Any]) -> None:
    kinds = ", ".join(f"{n} {k}" for k, n in report["docs_per_kind"].items())
    print(f"\n(b) planted copies, truth = shared origin (no Jaccard threshold): {report['docs']} docs ({kinds}; "
          f"~{report['mean_words']} words), {report['copies']} copies made by word edits")
    systems = report["systems"]
    names = list(systems)
    print("  recall = fraction of planted copies merged with their origin, per edit rate "
          "(true 5-gram Jaccard for information)")
    print(f"  {'edit rate':>9} {'copies':>6} {'mean J':>6} {'J range':>11} {'1-(1-J^8)^14':>12} "
          + " ".join(f"{n:>18}" for n in names))
    for rate, info in report["edit_rates"].items():
        if not info["copies"]:
            continue
        low, high = info["true_jaccard_range"]
        print(f"  {rate:>9} {info['copies']:>6} {info['true_jaccard_mean']:>6.3f} {low:>5.2f}-{high:<5.2f} "
              f"{info['lsh_theory']:>12.3f} "
              + " ".join(f"{systems[n]['per_rate'][rate]['recall']:>18.3f}" for n in names))
    print(f"  {'all':>9} {report['copies']:>6} {'':>6} {'':>11} {'':>12} "
          + " ".join(f"{systems[n]['recall_all_rates']:>18.3f}" for n in names))
    print("\n  removals (a removal is wrong when the document its cluster keeps has another origin)")
    rows = [("removed documents", "removed"), ("correct", "correct_removals"), ("precision", "precision"),
            ("wrong", "wrong_removals"), ("... of never-planted docs", "wrong_removals_never_planted"),
            ("origins lost outright", "origins_lost")]
    for label, key in rows:
        values = [systems[n][key] for n in names]
        cells = " ".join(f"{v:>18.4f}" if isinstance(v, float) else f"{v:>18}" for v in values)
        print(f"  {label:<26} {cells}")
    cells = " ".join(f"{str(systems[n]['wrong_removal_true_jaccard']['median']):>18}" for n in names)
    print(f"  {'wrong: median true J':<26} {cells}")
    cells = " ".join(f"{systems[n]['wrong_removal_true_jaccard']['at_least_0.75']:>18}" for n in names)
    print(f"  {'wrong: true J >= 0.75':<26} {cells}")
    for kind in report["docs_per_kind"]:
        recalls = [systems[n]["per_kind"][kind]["recall"] for n in names]
        if recalls[0] is not None:
            print(f"  {'recall, ' + kind:<26} " + " ".join(f"{r:>18.3f}" for r in recalls))
        print(f"  {'wrong, ' + kind:<26} "
              + " ".join(f"{systems[n]['per_kind'][kind]['wrong_removals']:>18}" for n in names))
    cells = " ".join(f"{systems[n]['seconds']:>18.2f}" for n in names)
    print(f"  {'seconds (sign + decide)':<26} {cells}")
    print("  (lmforge = minhash_dedup defaults, 14x8 LSH + bottom-512 sketch check at 0.75; lmforge_unverified = "
          "verify_threshold null;\n   datatrove = MinhashConfig() defaults through its signature, buckets, "
          "cluster and filter stages)")


def print_threshold_table(args: argparse.Namespace, report: dict[str, Any]) -> None:
    print(f"\n(c) LEGACY, threshold-based truth: {report['docs']} docs, {report['planted_pairs']} planted pairs "
          f"(target Jaccard {args.spread}), truth = true Jaccard >= {TRUTH_THRESHOLD},")
    print("    the threshold lmforge's verifier checks: its verified rows win here by construction; see (b)")
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


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    cpu, versions = cpu_name(), package_versions()
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    print(f"MinHash dedup benchmark on {cpu} ({os.cpu_count()} logical CPUs, load average {load}), "
          + ", ".join(f"{name} {version}" for name, version in versions.items() if version))
    speed = throughput(args)
    print_throughput(args, speed)
    planted = planted_quality(args)
    print_planted(args, planted)
    result: dict[str, Any] = {"benchmark": "dedup", "cpu": cpu, "logical_cpus": os.cpu_count(), "load_average": load,
                              "versions": versions, "throughput": speed,
                              "planted_copies": planted}
    if not args.no_threshold_table:
        report = quality(args)
        print_threshold_table(args, report)
        defaults = MinHashDedupOptions()
        default = next(s for s in report["settings"] if (s["verify_threshold"], s["verify_sketch_size"]) ==
                       (defaults.verify_threshold, defaults.verify_sketch_size))
        result.update({"threshold_truth": report, "threshold_truth_default_f1": default["f1"],
                       "threshold_truth_default_precision": default["precision"],
                       "threshold_truth_default_recall": default["recall"]})
    print(json.dumps(result))
    if "equal_outputs" in speed:
        sys.exit(exit_status([speed]))  # 1 when the speed comparison did unequal work


if __name__ == "__main__":
    main()
