"""Deduplication steps for the data pipeline (all ``CorpusStep``s; see lmforge.data.steps).

- ``exact_dedup`` (exact.py): same normalised text -> keep the first, drop the rest.
- ``minhash_dedup`` (minhash.py): near-duplicates by MinHash LSH, FineWeb's 14 x 8 bands.
- ``line_dedup`` (lines.py): remove lines/paragraphs already seen in an earlier document.

Shared parts: normalize.py (what counts as the same text), hashing.py (process-independent
hashes), signature.py (MinHash and LSH arithmetic), sketch.py (bottom-k sketches that verify
MinHash candidates), unionfind.py (duplicate clusters),
bloom.py (exact dedup's optional low-memory table).
Each step keeps the first document in corpus order (lowest ``DocRef``), so the result does
not depend on how the corpus was split across workers.
"""
