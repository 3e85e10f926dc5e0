"""Build real labelled sets for the hashed n-gram classifier from text already on this machine.

Task ``licence`` (default): **licence/legal boilerplate (label 1) vs technical documentation
prose (label 0)**, one
paragraph per example. Boilerplate paragraphs come from the licence texts Debian ships
(``/usr/share/common-licenses/*`` and the ``copyright`` files under ``/usr/share/doc``);
documentation paragraphs come from the Python reference documentation bundled with the
interpreter (``pydoc_data.topics``). Both sides are English prose written by people, so the
classifier has to learn register and vocabulary, not "code vs text". Caveat: licence texts
repeat each other (many packages quote the same GPL/BSD/MIT paragraphs with small edits), so
near-duplicates can sit on both sides of the held-out split; exact duplicates are removed here.

Task ``docstring`` (harder): **Python standard-library docstring paragraphs (label 1) vs
Python reference-manual paragraphs (label 0)**: same subject, same vocabulary, both written
by the CPython developers; only register and phrasing differ.

Usage (no network; nothing is committed):

    .venv/bin/python benchmarks/classifier_data.py /tmp/licence_vs_docs.jsonl
    .venv/bin/python benchmarks/classifier_data.py /tmp/docstring_vs_manual.jsonl docstring
"""

from __future__ import annotations

import ast
import glob
import json
import os
import random
import re
import sys
import sysconfig

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


def docstring_paragraphs() -> list[str]:
    stdlib = sysconfig.get_paths()["stdlib"]
    found = []
    for path in sorted(glob.glob(os.path.join(stdlib, "*.py"))):
        try:
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                found += paragraphs(ast.get_docstring(node) or "")
    return found


def build(out_path: str, task: str = "licence", max_per_class: int = 4000, seed: int = 0) -> dict[str, int]:
    """Write the balanced, deduplicated set of ``task`` to ``out_path``; return the count per label."""
    rng = random.Random(seed)
    flagged = licence_paragraphs() if task == "licence" else docstring_paragraphs()
    flagged_set, kept_set = set(flagged), set(documentation_paragraphs())
    overlap = flagged_set & kept_set  # a paragraph found on both sides has no true label
    sides = {1: sorted(flagged_set - overlap), 0: sorted(kept_set - overlap)}
    per_class = min(max_per_class, *(len(texts) for texts in sides.values()))
    rows = [{"text": t, "label": label} for label, texts in sides.items() for t in rng.sample(texts, per_class)]
    rng.shuffle(rows)
    with open(out_path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"flagged": per_class, "kept": per_class}


if __name__ == "__main__":
    counts = build(sys.argv[1] if len(sys.argv) > 1 else "licence_vs_docs.jsonl",
                   sys.argv[2] if len(sys.argv) > 2 else "licence")
    print(json.dumps(counts))
