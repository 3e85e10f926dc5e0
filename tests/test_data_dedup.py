"""Dedup steps (exact, MinHash LSH, line/paragraph) driven through their three-pass API.

Each test builds its corpus in code, runs fingerprint (as the workers would) -> decide (as the
driver would, over ``(DocRef, fingerprint)`` in corpus order) -> apply, and checks the exact
documents kept, dropped and rewritten.
"""

from __future__ import annotations

import hashlib
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest

from lmforge.data.dedup.bloom import BloomFilter, bloom_num_bits, bloom_num_hashes
from lmforge.data.dedup.exact import ExactDedup, ExactDedupOptions
from lmforge.data.dedup.hashing import digest64, mix64, ngram_hashes, word_hashes
from lmforge.data.dedup.lines import LineDedup, LineDedupOptions, join_units, split_units
from lmforge.data.dedup.minhash import MinHashDedup, MinHashDedupOptions, MinHashFingerprint, shared_key_runs
from lmforge.data.dedup.normalize import normalize_text
from lmforge.data.dedup.signature import (MERSENNE_PRIME, affine_mod_mersenne, band_keys,
                                          candidate_probability, estimated_jaccard,
                                          permutation_parameters)
from lmforge.data.dedup.sketch import bottom_k_sketch, sketch_jaccard
from lmforge.data.dedup.unionfind import UnionFind
from lmforge.data.document import Document
from lmforge.data.steps import DocRef, Drop, build_step
from lmforge.errors import ConfigError


# --------------------------------------------------------------------------- helpers


def run_corpus_step(step, shards: list[list[Document]]) -> tuple[dict[str, Document], dict[str, Drop]]:
    """The three passes: fingerprint per doc, decide once in corpus order, apply per doc."""
    refs = [(DocRef(s, p), doc) for s, shard in enumerate(shards) for p, doc in enumerate(shard)]
    fingerprints = [(ref, pickle.loads(pickle.dumps(step.fingerprint(doc)))) for ref, doc in refs]
    decisions = step.decide(iter(fingerprints))
    kept, dropped = {}, {}
    for ref, doc in refs:
        result = step.apply(doc, decisions.get(ref))
        if isinstance(result, Drop):
            dropped[doc.id] = result
        else:
            kept[doc.id] = result
    return kept, dropped


def split_into(docs: list[Document], sizes: list[int]) -> list[list[Document]]:
    """The same corpus, in the same order, cut into shards of the given sizes."""
    shards, start = [], 0
    for size in sizes:
        shards.append(docs[start:start + size])
        start += size
    assert start == len(docs)
    return shards


def letter_word(index: int) -> str:
    """A distinct digit-free word per index ("qa", "qb", ...): digits would be normalised away."""
    letters = []
    while True:
        index, rest = divmod(index, 26)
        letters.append(chr(ord("a") + rest))
        if index == 0:
            return "q" + "".join(letters)


def shingle_set(text: str, size: int = 5) -> set[tuple[str, ...]]:
    words = normalize_text(text, strip_punctuation=True, normalize_digits=True).split()
    return {tuple(words[i:i + size]) for i in range(len(words) - size + 1)}


def true_jaccard(text_a: str, text_b: str) -> float:
    a, b = shingle_set(text_a), shingle_set(text_b)
    return len(a & b) / len(a | b)


def replaced_every(words: list[str], step: int, tag: str, offset: int = -1) -> list[str]:
    """Replace every ``step``-th word (from ``offset``, default step//2) with a word seen nowhere else."""
    offset = step // 2 if offset < 0 else offset
    return [f"{tag}{letter_word(i)}" if i % step == offset else w for i, w in enumerate(words)]


# --------------------------------------------------------------------------- normalisation and hashes


def test_normalize_text_folds_form_case_and_space() -> None:
    assert normalize_text("  Straße\u00a0FOO\t\n bar ") == "strasse foo bar"
    assert normalize_text("ＡＢＣ ﬁne") == "abc fine"  # full-width letters and the fi ligature (NFKC)
    assert normalize_text("Hello, world!") == "hello, world!"
    assert normalize_text("Hello, world!", strip_punctuation=True) == "hello world"
    assert normalize_text("end.Start a_b", strip_punctuation=True) == "end start a b"
    assert normalize_text("page 12 of ٣٤", normalize_digits=True) == "page 00 of 00"
    assert normalize_text(" \n\t ") == ""


def test_normalize_text_ascii_fast_path_matches_general_path() -> None:
    # Appending a non-ASCII word sends the same text down the general (regex) path.
    rng = random.Random(0)
    alphabet = [chr(i) for i in range(128)]
    for _ in range(1500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        for strip in (False, True):
            for digits in (False, True):
                fast = normalize_text(text, strip_punctuation=strip, normalize_digits=digits)
                general = normalize_text(text + " é", strip_punctuation=strip, normalize_digits=digits)
                assert general == (fast + " é").lstrip(), (text, strip, digits)


def test_digest64_is_blake2b_little_endian() -> None:
    expected = int.from_bytes(hashlib.blake2b(b"hello", digest_size=8).digest(), "little")
    assert digest64("hello") == expected


def reference_word_hash(word: str) -> int:
    """hashing.word_hashes for one word, in Python integers: the documented formula."""
    mask = (1 << 64) - 1
    value = sum(byte * pow(0x9E3779B97F4A7C15, j, 1 << 64) for j, byte in enumerate(word.encode()))
    value = (value & mask) ^ ((len(word.encode()) * 0x94D049BB133111EB) & mask)
    return int(mix64(np.array([value], dtype=np.uint64))[0])


def test_word_hashes_follow_the_formula_and_ignore_position() -> None:
    hashes = word_hashes("ab cd ab é").tolist()
    assert hashes == [reference_word_hash(w) for w in ["ab", "cd", "ab", "é"]]
    assert hashes[0] == hashes[2] != hashes[1]
    # "a" and "a\x00" must differ (the length is folded in).
    assert word_hashes("a").tolist() != word_hashes("a\x00").tolist()
    assert word_hashes("").size == 0


def test_ngram_hashes_count_and_short_sequences() -> None:
    hashes = word_hashes("a b c d e f g")
    assert ngram_hashes(hashes, 5).size == 3
    assert ngram_hashes(hashes[:3], 5).size == 1  # fewer words than n: one shingle of all of them
    assert ngram_hashes(hashes[:0], 5).size == 0
    # Order matters: "a b c d e" and "e d c b a" are different shingles.
    assert ngram_hashes(hashes[:5], 5)[0] != ngram_hashes(hashes[:5][::-1], 5)[0]


def test_hashes_are_the_same_in_another_process_with_another_hash_seed() -> None:
    code = ("from lmforge.data.dedup.hashing import word_hashes, ngram_hashes, digest64;"
            "from lmforge.data.dedup.sketch import bottom_k_sketch;"
            "h = ngram_hashes(word_hashes('the quick brown fox jumps over'), 5);"
            "print(h.tolist(), digest64('x'), bottom_k_sketch(h, 1).tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""}).stdout.strip()
    hashes = ngram_hashes(word_hashes('the quick brown fox jumps over'), 5)
    here = f"{hashes.tolist()} {digest64('x')} {bottom_k_sketch(hashes, 1).tolist()}"
    assert out == here


def test_affine_mod_mersenne_is_exact() -> None:
    a, b = permutation_parameters(112, seed=3)
    a[0], b[0] = MERSENNE_PRIME - 1, MERSENNE_PRIME - 1  # the largest products and offsets
    x = np.random.default_rng(0).integers(0, 1 << 61, size=64, dtype=np.uint64)
    x[:3] = [0, (1 << 61) - 1, MERSENNE_PRIME - 1]
    got = affine_mod_mersenne(x.reshape(-1, 1), a, b)
    expected = [[(int(aj) * int(xi) + int(bj)) % MERSENNE_PRIME for aj, bj in zip(a, b)] for xi in x]
    assert got.tolist() == expected


def test_permutation_parameters_are_seeded_and_in_range() -> None:
    a, b = permutation_parameters(112, seed=1)
    a2, b2 = permutation_parameters(112, seed=1)
    assert a.tolist() == a2.tolist() and b.tolist() == b2.tolist()
    assert permutation_parameters(112, seed=2)[0].tolist() != a.tolist()
    assert int(a.min()) >= 1 and int(a.max()) < MERSENNE_PRIME and int(b.max()) < MERSENNE_PRIME


def test_union_find_keeps_the_smallest_root() -> None:
    clusters = UnionFind(6)
    clusters.union(4, 5)
    clusters.union(5, 2)
    clusters.union(0, 1)
    assert [clusters.find(i) for i in range(6)] == [0, 0, 2, 3, 2, 2]
    assert clusters.add() == 6 and clusters.find(6) == 6


# --------------------------------------------------------------------------- exact dedup


EXACT_CORPUS = [
    Document("a", "The cat sat on the mat."),
    Document("b", "A different text entirely."),
    Document("c", "  the CAT sat\non   the mat. "),  # same as a up to case and spacing
    Document("d", "The cat sat on the mat"),  # no full stop: different unless punctuation stripped
    Document("e", "a different text ENTIRELY."),
    Document("f", "The cat sat on the mat."),
]


def test_exact_dedup_drops_case_and_space_variants_keeps_first() -> None:
    kept, dropped = run_corpus_step(ExactDedup(ExactDedupOptions()), [EXACT_CORPUS])
    assert sorted(kept) == ["a", "b", "d"]
    assert dropped == {"c": Drop("exact_duplicate", "of a"), "e": Drop("exact_duplicate", "of b"),
                       "f": Drop("exact_duplicate", "of a")}
    assert kept["a"] is EXACT_CORPUS[0]  # kept documents pass through untouched


def test_exact_dedup_strip_punctuation_option() -> None:
    kept, dropped = run_corpus_step(ExactDedup(ExactDedupOptions(strip_punctuation=True)), [EXACT_CORPUS])
    assert sorted(kept) == ["a", "b"]
    assert dropped["d"] == Drop("exact_duplicate", "of a")


@pytest.mark.parametrize("sizes", [[6], [2, 2, 2], [1, 4, 1], [5, 1]])
def test_exact_dedup_same_result_however_the_corpus_is_sharded(sizes: list[int]) -> None:
    kept, dropped = run_corpus_step(ExactDedup(ExactDedupOptions()), split_into(EXACT_CORPUS, sizes))
    assert sorted(kept) == ["a", "b", "d"]
    assert {k: v.detail for k, v in dropped.items()} == {"c": "of a", "e": "of b", "f": "of a"}


def test_exact_dedup_decide_keeps_lowest_ref_even_out_of_order() -> None:
    step = ExactDedup(ExactDedupOptions())
    refs = [DocRef(0, i) for i in range(len(EXACT_CORPUS))]
    pairs = [(ref, step.fingerprint(doc)) for ref, doc in zip(refs, EXACT_CORPUS)]
    assert step.decide(reversed(pairs)) == step.decide(pairs) == {refs[2]: "a", refs[4]: "b", refs[5]: "a"}


# --------------------------------------------------------------------------- MinHash


BASE_WORDS = [letter_word(i) for i in range(404)]  # 400 distinct 5-gram shingles


def test_minhash_estimate_close_to_true_jaccard() -> None:
    step = MinHashDedup(MinHashDedupOptions())
    base = " ".join(BASE_WORDS)
    signature = step.signature(base)
    # Replacing k words at least 5 apart removes 5k shared shingles and adds 5k new ones:
    # J = (400 - 5k) / (400 + 5k); every 40th word -> k = 10 -> 350/450; every 10th -> 40 -> 200/600.
    for every, expected in [(40, 350 / 450), (20, 300 / 500), (10, 200 / 600), (400, 395 / 405)]:
        variant = " ".join(replaced_every(BASE_WORDS, every, "z"))
        assert true_jaccard(base, variant) == pytest.approx(expected)
        estimate = estimated_jaccard(signature, step.signature(variant))
        assert abs(estimate - expected) < 0.1, (every, estimate, expected)
    assert estimated_jaccard(signature, step.signature(base.upper() + " !")) == 1.0


def test_candidate_probability_matches_fineweb_table() -> None:
    # FineWeb (Penedo et al. 2024) 14 x 8 table: 0.05 at 0.5, 0.21 at 0.6, 0.57 at 0.7, 0.77 at 0.75, 0.92 at 0.8,
    # 1.00 at 0.9. By hand, 1 - (1 - 0.7**8)**14 = 1 - 0.94235**14 = 0.5645: the table's 0.57
    # is that rounded up, so the check allows 0.006.
    table = {0.5: 0.05, 0.6: 0.21, 0.7: 0.57, 0.75: 0.77, 0.8: 0.92, 0.9: 1.00}
    for similarity, probability in table.items():
        assert abs(candidate_probability(similarity, 14, 8) - probability) <= 0.006
    assert candidate_probability(0.7, 14, 8) == pytest.approx(0.5645, abs=1e-4)
    assert candidate_probability(0.5, 1, 1) == 0.5 and candidate_probability(1.0, 14, 8) == 1.0


def test_band_collision_rate_matches_formula_in_simulation() -> None:
    # Signatures whose rows agree independently with probability s: the fraction of pairs
    # sharing a band key must follow 1 - (1 - s^8)^14 (the banding code, not just the formula).
    rng = np.random.default_rng(0)
    trials = 1500
    for similarity in (0.6, 0.7, 0.8):
        hits = 0
        for _ in range(trials):
            first = rng.integers(0, MERSENNE_PRIME, size=112, dtype=np.uint64)
            other = rng.integers(0, MERSENNE_PRIME, size=112, dtype=np.uint64)
            second = np.where(rng.random(112) < similarity, first, other)
            hits += bool(np.any(band_keys(first, 14, 8) == band_keys(second, 14, 8)))
        expected = 1 - (1 - similarity ** 8) ** 14  # the formula itself, not candidate_probability
        assert abs(hits / trials - expected) < 0.04, (similarity, hits / trials, expected)


def minhash_corpus() -> list[Document]:
    base = " ".join(BASE_WORDS)
    unrelated = " ".join(f"u{w}" for w in BASE_WORDS)
    return [
        Document("orig", base),
        Document("other", unrelated),
        Document("copy", base.upper().replace(" ", "  ") + "!!"),  # identical after normalisation
        Document("near", " ".join(replaced_every(BASE_WORDS, 200, "z"))),  # J = 390/410 = 0.95
        Document("far", " ".join(replaced_every(BASE_WORDS, 8, "z"))),  # J = 150/650 = 0.23
        Document("short", "Hello, World!"),
        Document("short-copy", "hello world"),
        Document("short-other", "hello there"),
        Document("empty1", "!!! ..."),
        Document("empty2", "!!! ..."),
    ]


@pytest.mark.parametrize("sizes,sketch_size", [([10], 512), ([3, 3, 4], 512), ([1, 1, 8], 512), ([3, 3, 4], 0)])
def test_minhash_dedup_flags_duplicates_not_unrelated(sizes: list[int], sketch_size: int) -> None:
    step = MinHashDedup(MinHashDedupOptions(verify_sketch_size=sketch_size))
    kept, dropped = run_corpus_step(step, split_into(minhash_corpus(), sizes))
    assert sorted(kept) == ["empty1", "empty2", "far", "orig", "other", "short", "short-other"]
    assert dropped == {"copy": Drop("near_duplicate", "of orig"), "near": Drop("near_duplicate", "of orig"),
                       "short-copy": Drop("near_duplicate", "of short")}


def test_minhash_clusters_are_transitive_and_keep_the_first() -> None:
    # b is a with 4 words replaced (J = 380/420 = 0.90), c is b with 4 other words replaced
    # (J(b, c) = 0.90) and J(a, c) = 360/440 = 0.82. With verification at 0.86 (448 one-row
    # bands, so every pair is a candidate and the estimate is tight) only a-b and b-c join,
    # and the cluster {a, b, c} is still one: c, listed first, is kept.
    a = BASE_WORDS
    b = replaced_every(a, 100, "y", offset=50)
    c = replaced_every(b, 100, "x", offset=20)
    assert (true_jaccard(" ".join(a), " ".join(b)), true_jaccard(" ".join(a), " ".join(c))) == (380 / 420, 360 / 440)
    docs = [Document("c", " ".join(c)), Document("b", " ".join(b)), Document("a", " ".join(a))]
    options = MinHashDedupOptions(num_bands=448, rows_per_band=1, verify_threshold=0.86)
    kept, dropped = run_corpus_step(MinHashDedup(options), [docs])
    assert sorted(kept) == ["c"]
    assert dropped == {"b": Drop("near_duplicate", "of c"), "a": Drop("near_duplicate", "of c")}
    # Without b in the corpus, a and c are too far apart to join.
    kept, dropped = run_corpus_step(MinHashDedup(options), [[docs[0], docs[2]]])
    assert sorted(kept) == ["a", "c"] and dropped == {}


def test_minhash_verify_threshold_rejects_low_similarity_candidates() -> None:
    # 112 bands of one row: a pair with J = 0.6 is a candidate almost surely (1 - 0.4^112).
    docs = [Document("a", " ".join(BASE_WORDS)), Document("b", " ".join(replaced_every(BASE_WORDS, 20, "z")))]
    loose = MinHashDedupOptions(num_bands=112, rows_per_band=1, verify_threshold=None)
    kept, dropped = run_corpus_step(MinHashDedup(loose), [docs])
    assert sorted(kept) == ["a"] and dropped == {"b": Drop("near_duplicate", "of a")}
    verified = MinHashDedupOptions(num_bands=112, rows_per_band=1, verify_threshold=0.8)
    kept, dropped = run_corpus_step(MinHashDedup(verified), [docs])
    assert sorted(kept) == ["a", "b"] and dropped == {}
    # A true duplicate still passes verification.
    docs.append(Document("c", " ".join(BASE_WORDS).title()))
    kept, dropped = run_corpus_step(MinHashDedup(verified), [docs])
    assert sorted(kept) == ["a", "b"] and dropped == {"c": Drop("near_duplicate", "of a")}


def top32(values: list[int]) -> np.ndarray:
    """uint64 hashes whose top 32 bits are ``values`` (low bits set, which the sketch must ignore)."""
    return np.array([(v << 32) | 0xABCD for v in values], dtype=np.uint64)


def test_bottom_k_sketch_keeps_the_k_smallest_distinct_top_bits() -> None:
    hashes = top32([9, 3, 5, 3, 1, 5])
    assert bottom_k_sketch(hashes, 3).tolist() == [1, 3, 5]
    assert bottom_k_sketch(hashes, 10).tolist() == [1, 3, 5, 9]  # fewer distinct values than k: all of them
    assert bottom_k_sketch(hashes, 3).dtype == np.uint32
    assert bottom_k_sketch(np.empty(0, dtype=np.uint64), 4).size == 0
    # Large inputs go through np.partition: same answer as the plain sort, repeats included.
    rng = np.random.default_rng(0)
    for size, distinct_values in [(5000, 1 << 32), (5000, 700), (5000, 300), (3000, 50)]:
        values = rng.integers(0, distinct_values, size=size, dtype=np.uint64) << np.uint64(32)
        expected = np.unique(values >> np.uint64(32))[:512].tolist()
        assert bottom_k_sketch(values, 512).tolist() == expected, (size, distinct_values)


def test_sketch_jaccard_hand_computed() -> None:
    a, b = np.array([1, 2, 4, 6], np.uint32), np.array([1, 3, 4, 5], np.uint32)
    # k = 4, both sketches full: the union's 4 smallest are 1, 2, 3, 4, of which 1 and 4 are in both.
    assert sketch_jaccard(a, b, 4) == 2 / 4
    # k = 8: both sketches are whole sets: |{1, 4}| / |{1, 2, 3, 4, 5, 6}|, exact.
    assert sketch_jaccard(a, b, 8) == 2 / 6
    # One whole set {2, 9} (k = 4) and one cut sketch: sample 1, 2, 3, 4, only 2 shared.
    assert sketch_jaccard(np.array([2, 9], np.uint32), np.array([1, 2, 3, 4], np.uint32), 4) == 1 / 4
    assert sketch_jaccard(a, a, 4) == 1.0
    assert sketch_jaccard(a[:0], a[:0], 4) == 0.0


def test_sketch_jaccard_is_exact_on_small_documents() -> None:
    step = MinHashDedup(MinHashDedupOptions())

    def sketch(text: str) -> np.ndarray:
        return bottom_k_sketch(step.shingle_hashes(text), 512)

    # Shingles of "a b c d e f g": abcde, bcdef, cdefg; of "a b c d e f x": abcde, bcdef, cdefx.
    # Shared 2 of 4 distinct: J = 1/2.
    assert sketch_jaccard(sketch("a b c d e f g"), sketch("A b, c d e f x!"), 512) == 0.5
    # "a b c d e f g h" adds defgh to the first set: J = 3/4.
    assert sketch_jaccard(sketch("a b c d e f g h"), sketch("a b c d e f g"), 512) == 0.75
    # A repeated shingle counts once: "a b c d e a b c d e" = abcde, bcdea, cdeab, deabc, eabcd, abcde.
    assert sketch("a b c d e a b c d e").size == 5
    assert sketch_jaccard(sketch("a b c d e a b c d e"), sketch("a b c d e"), 512) == 1 / 5
    # 400-shingle documents (< k): every 40th word replaced -> J = 350/450 exactly.
    base, variant = " ".join(BASE_WORDS), " ".join(replaced_every(BASE_WORDS, 40, "z"))
    assert sketch_jaccard(sketch(base), sketch(variant), 512) == pytest.approx(350 / 450, abs=1e-12)


def test_sketch_estimate_is_close_for_large_documents_and_beats_the_signature() -> None:
    # 20 pairs of 5,000-shingle documents (above k = 512, so the sketch samples): every 40th
    # word replaced -> J = (5000 - 625) / (5000 + 625) = 0.7778. Bottom-512 standard deviation
    # there is 0.018 (times sqrt((n-k)/(n-1)) = 0.95), the 112-value signature's 0.039.
    step = MinHashDedup(MinHashDedupOptions())
    expected = 4375 / 5625
    sketch_errors, signature_errors = [], []
    for pair in range(20):
        words = [f"p{letter_word(pair)}x{letter_word(i)}" for i in range(5004)]
        base, variant = " ".join(words), " ".join(replaced_every(words, 40, "z"))
        if pair == 0:
            assert true_jaccard(base, variant) == pytest.approx(expected)
        base_hashes, variant_hashes = step.shingle_hashes(base), step.shingle_hashes(variant)
        estimate = sketch_jaccard(bottom_k_sketch(base_hashes, 512), bottom_k_sketch(variant_hashes, 512), 512)
        sketch_errors.append(estimate - expected)
        signature_errors.append(estimated_jaccard(step.signature(base), step.signature(variant)) - expected)
    assert max(abs(e) for e in sketch_errors) < 0.06  # ~3.5 standard deviations
    assert abs(float(np.mean(sketch_errors))) < 0.012  # unbiased: mean of 20 has sd 0.004
    assert float(np.std(sketch_errors)) < 0.03
    assert float(np.mean(np.abs(sketch_errors))) < float(np.mean(np.abs(signature_errors)))


def test_minhash_sketch_verification_splits_pairs_just_above_and_below_threshold() -> None:
    # 400-shingle documents: replacing m words at least 5 apart gives J = (400 - 5m) / (400 + 5m).
    # m = 11 -> 345/455 = 0.758 (a near-duplicate), m = 12 -> 340/460 = 0.739 (not one). The
    # sketches are the whole sets, so verification is exact; 112 one-row bands make both pairs
    # candidates (1 - 0.26**112). A 112-value estimate (sd 0.04) cannot split 0.758 from 0.739.
    base = " ".join(BASE_WORDS)
    above = " ".join(replaced_every(BASE_WORDS, 37, "y", offset=18))
    below = " ".join(replaced_every(BASE_WORDS, 34, "z", offset=17))
    assert true_jaccard(base, above) == 345 / 455 and true_jaccard(base, below) == 340 / 460
    assert true_jaccard(above, below) < 0.6
    options = MinHashDedupOptions(num_bands=112, rows_per_band=1)
    docs = [Document("base", base), Document("above", above), Document("below", below)]
    kept, dropped = run_corpus_step(MinHashDedup(options), [docs])
    assert sorted(kept) == ["base", "below"] and dropped == {"above": Drop("near_duplicate", "of base")}
    # A threshold between them moves the cut; null (unverified) joins all three.
    options.verify_threshold = 0.73
    assert set(run_corpus_step(MinHashDedup(options), [docs])[1]) == {"above", "below"}
    options.verify_threshold = 0.76
    assert run_corpus_step(MinHashDedup(options), [docs])[1] == {}
    options.verify_threshold = None
    assert set(run_corpus_step(MinHashDedup(options), [docs])[1]) == {"above", "below"}


def test_shared_key_runs_groups_equal_keys_in_row_order() -> None:
    assert shared_key_runs(np.array([5, 3, 5, 7, 3, 5], dtype=np.uint64)) == [[1, 4], [0, 2, 5]]
    assert shared_key_runs(np.array([1, 2, 3], dtype=np.uint64)) == []
    assert shared_key_runs(np.array([], dtype=np.uint64)) == []


def test_minhash_many_copies_cost_one_comparison_each() -> None:
    # 3,000 copies of one page (plus an unrelated page) in one bucket per band: verification
    # compares each copy with the group's first row only, so this stays fast, and every copy
    # points at the first.
    step = MinHashDedup(MinHashDedupOptions())
    page = step.fingerprint(Document("page0", " ".join(BASE_WORDS)))
    other = step.fingerprint(Document("other", " ".join(f"u{w}" for w in BASE_WORDS)))
    assert page.sketch and page.signature == b""
    entries = [(DocRef(0, 0), other)] + [
        (DocRef(1, i), MinHashFingerprint(f"page{i}", page.band_keys, sketch=page.sketch)) for i in range(3000)]
    decisions = step.decide(entries)
    assert len(decisions) == 2999 and set(decisions.values()) == {"page0"} and DocRef(0, 0) not in decisions


def test_minhash_fingerprint_is_compact_and_pickles() -> None:
    unverified = MinHashDedup(MinHashDedupOptions(verify_threshold=None))
    fingerprint = unverified.fingerprint(Document("x", " ".join(BASE_WORDS)))
    assert len(fingerprint.band_keys) == 14 * 8 and fingerprint.signature == b""
    assert len(pickle.dumps(fingerprint)) < 250
    step = MinHashDedup(MinHashDedupOptions())  # verifies by default: the bottom-k sketch travels too
    fingerprint = step.fingerprint(Document("x", " ".join(BASE_WORDS)))
    # 400 distinct shingles, fewer than k = 512: the sketch is the whole set, 4 bytes each.
    assert len(fingerprint.band_keys) == 14 * 8 and len(fingerprint.sketch) == 400 * 4
    assert fingerprint.signature == b"" and len(pickle.dumps(fingerprint)) < 1900
    long_doc = step.fingerprint(Document("long", " ".join(letter_word(i) for i in range(2000))))
    assert len(long_doc.sketch) == 512 * 4  # capped at k values
    signature_step = MinHashDedup(MinHashDedupOptions(verify_sketch_size=0))
    by_signature = signature_step.fingerprint(Document("x", " ".join(BASE_WORDS)))
    assert len(by_signature.signature) == 112 * 4 and by_signature.sketch == b""
    assert len(pickle.dumps(by_signature)) < 700
    clone = pickle.loads(pickle.dumps(step))
    assert clone.fingerprint(Document("x", " ".join(BASE_WORDS))) == fingerprint
    assert step.fingerprint(Document("empty", "?!")) == MinHashFingerprint("empty", b"", b"", b"")


def test_minhash_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="ngram_size"):
        MinHashDedup(MinHashDedupOptions(ngram_size=0))
    with pytest.raises(ConfigError, match="verify_threshold"):
        MinHashDedup(MinHashDedupOptions(verify_threshold=1.5))
    with pytest.raises(ConfigError, match="verify_sketch_size"):
        MinHashDedup(MinHashDedupOptions(verify_sketch_size=-1))
    step = build_step({"step": "minhash_dedup", "num_bands": 20, "rows_per_band": 5, "verify_threshold": 0.8}, 3)
    assert isinstance(step, MinHashDedup) and step.num_perm == 100 and step.options.verify_threshold == 0.8
    with pytest.raises(ConfigError, match=r"steps\[3\]\.bands"):
        build_step({"step": "minhash_dedup", "bands": 20}, 3)


# --------------------------------------------------------------------------- line / paragraph dedup


LINE_CORPUS = [
    Document("a", "Accept all cookies to continue\nFirst article, all of it.\n}\n}\nAccept all cookies to continue"),
    Document("b", "ACCEPT  all cookies to continue\nSecond article body text.\n}\nshort\n"),
    Document("c", "accept all cookies to continue\n\nFirst article, all of it."),
    Document("d", "Nothing shared with the others here."),
]


@pytest.mark.parametrize("sizes", [[4], [1, 1, 2], [2, 2]])
def test_line_dedup_removes_exactly_the_lines_seen_earlier(sizes: list[int]) -> None:
    kept, dropped = run_corpus_step(LineDedup(LineDedupOptions()), split_into(LINE_CORPUS, sizes))
    # a: the first occurrence stays, and so does its repeat inside a. b: the cookie line
    # goes; "}" and "short" are under 10 characters and stay. c: both of its long lines were
    # seen earlier and only an empty line remains, so c is dropped.
    assert kept["a"].text == LINE_CORPUS[0].text
    assert kept["b"].text == "Second article body text.\n}\nshort\n"
    assert kept["d"] is LINE_CORPUS[3]
    assert dropped == {"c": Drop("empty_after_line_dedup", "2 lines seen earlier, nothing left")}


def test_line_dedup_keeps_meta_and_id() -> None:
    docs = [Document("a", "a line long enough\nx", {"source": "s1"}),
            Document("b", "a line long enough\nkept line of b", {"source": "s2"})]
    kept, _ = run_corpus_step(LineDedup(LineDedupOptions()), [docs])
    assert kept["b"] == Document("b", "kept line of b", {"source": "s2"})


def test_paragraph_dedup_removes_repeated_paragraphs() -> None:
    footer = "Copyright Example Corp.\nAll rights reserved."
    docs = [Document("a", f"Intro paragraph one.\n\n{footer}"),
            Document("b", f"Another story begins\nand goes on.\n\n\n{footer}\n\nThe end of story b."),
            Document("c", f"{footer}\n   \n{footer}")]
    step = LineDedup(LineDedupOptions(unit="paragraph"))
    kept, dropped = run_corpus_step(step, [docs])
    assert kept["a"].text == docs[0].text
    assert kept["b"].text == "Another story begins\nand goes on.\n\nThe end of story b."
    assert dropped == {"c": Drop("empty_after_line_dedup", "2 paragraphs seen earlier, nothing left")}


def test_split_and_join_units_round_trip() -> None:
    text = "one\n\n\ntwo\n  \nthree\n"
    units, separators = split_units(text, "paragraph")
    assert units == ["one", "two", "three\n"] and separators == ["\n\n\n", "\n  \n"]
    assert join_units(units, separators, []) == text
    assert join_units(units, separators, [0]) == "two\n  \nthree\n"
    lines, line_separators = split_units("a\r\nb\n", "line")
    assert lines == ["a\r", "b", ""] and join_units(lines, line_separators, []) == "a\r\nb\n"


def test_line_dedup_min_chars_is_validated() -> None:
    with pytest.raises(ConfigError, match="min_chars"):
        LineDedup(LineDedupOptions(min_chars=0))
    with pytest.raises(ConfigError, match=r"steps\[0\]\.unit"):
        build_step({"step": "line_dedup", "unit": "sentence"}, 0)


# --------------------------------------------------------------------------- Bloom filter mode


def test_bloom_filter_sizing_follows_the_formula() -> None:
    # m = -n ln p / (ln 2)^2 = 1e6 * 4.60517 / 0.480453 = 9,585,058.4 -> 9,585,059; k = round(9.585 * 0.693) = 7.
    assert bloom_num_bits(1_000_000, 0.01) == 9_585_059
    assert bloom_num_hashes(9_585_059, 1_000_000) == 7
    assert bloom_num_bits(1000, 0.001) == 14_378  # 1000 * 6.90776 / 0.480453 = 14,377.6


def test_bloom_filter_false_positive_rate_is_near_target() -> None:
    bloom = BloomFilter(5000, 0.01)
    digests = [hashlib.blake2b(f"doc {i}".encode(), digest_size=16).digest() for i in range(10_000)]
    # While filling, the false-positive rate climbs from 0 to 1%, so a few adds say "seen".
    assert sum(bloom.add(d) for d in digests[:5000]) < 50
    assert all(d in bloom for d in digests[:5000])  # no false negatives, ever
    false_positives = sum(d in bloom for d in digests[5000:])
    assert 20 <= false_positives <= 80  # 1% of 5000 = 50 expected


def test_exact_dedup_bloom_mode_drops_the_same_copies() -> None:
    step = ExactDedup(ExactDedupOptions(bloom_false_positive_rate=1e-6))
    kept, dropped = run_corpus_step(step, split_into(EXACT_CORPUS, [2, 4]))
    assert sorted(kept) == ["a", "b", "d"]
    assert set(dropped) == {"c", "e", "f"}
    assert dropped["c"] == Drop("exact_duplicate", "of an earlier document (Bloom filter)")
    sized = ExactDedup(ExactDedupOptions(bloom_false_positive_rate=1e-6, bloom_capacity=100))
    assert set(run_corpus_step(sized, [EXACT_CORPUS])[1]) == {"c", "e", "f"}
    with pytest.raises(ConfigError, match="bloom_false_positive_rate"):
        ExactDedup(ExactDedupOptions(bloom_false_positive_rate=1.0))
