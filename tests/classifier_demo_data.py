"""Build a real labelled set for the hashed n-gram classifier from text already on this machine.

Task: **licence/legal boilerplate (label 1) vs technical documentation prose (label 0)**, one
paragraph per example. Boilerplate paragraphs come from the licence texts Debian ships
(``/usr/share/common-licenses/*`` and the ``copyright`` files under ``/usr/share/doc``);
documentation paragraphs come from the Python reference documentation bundled with the
interpreter (``pydoc_data.topics``). Both sides are English prose written by people, so the
classifier has to learn register and vocabulary, not "code vs text". Caveat: licence texts
repeat each other (many packages quote the same GPL/BSD/MIT paragraphs with small edits), so
near-duplicates can sit on both sides of the held-out split; exact duplicates are removed here.

Usage (no network; nothing is committed):

    .venv/bin/python tests/classifier_demo_data.py /tmp/licence_vs_docs.jsonl
"""

from __future__ import annotations

import glob
import json
import random
import re
import sys

_MIN_WORDS = 20


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs with whitespace collapsed, at least _MIN_WORDS words."""
    found = []
    for block in re.split(r"\n\s*\n", text):
        block = " ".join(block.split())
        if len(block.split()) >= _MIN_WORDS:
            found.append(block)
    return found


def licence_paragraphs() -> list[str]:
    files = sorted(glob.glob("/usr/share/common-licenses/*")) + sorted(glob.glob("/usr/share/doc/*/copyright"))
    found = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                found += paragraphs(f.read())
        except (OSError, UnicodeDecodeError):
            continue
    return found


def documentation_paragraphs() -> list[str]:
    from pydoc_data.topics import topics

    return [p for name in sorted(topics) for p in paragraphs(topics[name])]


def build(out_path: str, max_per_class: int = 4000, seed: int = 0) -> dict[str, int]:
    """Write the balanced, deduplicated set to ``out_path``; return the count per label."""
    rng = random.Random(seed)
    sides = {1: sorted(set(licence_paragraphs())), 0: sorted(set(documentation_paragraphs()))}
    overlap = sides[0] and set(sides[0]) & set(sides[1])
    per_class = min(max_per_class, *(len(v) for v in sides.values()))
    rows = []
    for label, texts in sides.items():
        texts = [t for t in texts if t not in overlap]
        rows += [{"text": t, "label": label} for t in rng.sample(texts, per_class)]
    rng.shuffle(rows)
    with open(out_path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"licence": per_class, "documentation": per_class}


if __name__ == "__main__":
    counts = build(sys.argv[1] if len(sys.argv) > 1 else "licence_vs_docs.jsonl")
    print(json.dumps(counts))
