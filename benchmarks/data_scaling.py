"""How the data pipeline scales with workers: the same pipeline, 1..N process-pool workers.

Generates a deterministic corpus of prose-like documents (with planted exact and near
duplicates) in NUM_FILES JSONL files, runs a FineWeb-style pipeline (clean, gopher quality and
repetition, fineweb quality, pii, exact and MinHash dedup) with each worker count, checks the
outputs are identical, and prints a header naming the CPU, docs/s and the speedup over the
first worker count, then one JSON line. A worker count whose output differs from the first's
gets no speedup: the run prints "outputs differ: ...", a "-" in the table, null in the JSON
(`identical_output: false`) and exits with status 1 after the JSON line (`equal_work`).
`--perturb-peer` drops one document from the last worker count's output: a self-check that
this guard trips, not a measurement.

    python benchmarks/data_scaling.py --files 32 --docs-per-file 400 --workers 1,2,4,8,16
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import sys
import time

from equal_work import check, cpu_name, exit_status, format_ratio

from lmforge.config import DataRunConfig, load_config
from lmforge.data.pipeline import run_pipeline

WORDS = ("the of and to in is that it was for on are with as his they be at one have this from "
         "or had by word but what some we can out other were all there when up use your how said "
         "each she which do their time if will way about many then them write would like so these "
         "her long make thing see him two has look more day could go come did number sound no most "
         "people my over know water than call first who may down side been now find river garden "
         "morning village teacher window station mountain harbour letter kitchen journey").split()

STEPS = [{"step": "clean"}, {"step": "gopher_quality"}, {"step": "gopher_repetition"},
         {"step": "fineweb_quality"}, {"step": "pii"}, {"step": "exact_dedup"}, {"step": "minhash_dedup"}]


def document(rng: random.Random) -> str:
    paragraphs = []
    for _ in range(rng.randint(3, 6)):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 18))).capitalize() + "."
                     for _ in range(rng.randint(3, 6))]
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def make_corpus(root: str, num_files: int, docs_per_file: int) -> int:
    rng = random.Random(0)
    earlier: list[str] = []
    total = 0
    for i in range(num_files):
        with open(os.path.join(root, f"part{i:04d}.jsonl"), "w", encoding="utf-8") as f:
            for _ in range(docs_per_file):
                roll = rng.random()
                if earlier and roll < 0.05:
                    text = rng.choice(earlier)                      # exact duplicate
                elif earlier and roll < 0.10:
                    words = rng.choice(earlier).split(" ")          # near duplicate: a few words changed
                    for j in rng.sample(range(len(words)), max(1, len(words) // 30)):
                        words[j] = rng.choice(WORDS)
                    text = " ".join(words)
                else:
                    text = document(rng)
                    earlier.append(text)
                f.write(json.dumps({"text": text}) + "\n")
                total += 1
    return total


def outputs(out: str) -> list[str]:
    lines = []
    for split in ("train", "val"):
        for name in sorted(os.listdir(os.path.join(out, split))):
            with open(os.path.join(out, split, name), encoding="utf-8") as f:
                lines += f.readlines()
    return lines


def differing_lines(result: list[str], reference: list[str]) -> int:
    """Output lines (documents) that differ position by position, counting missing or extra ones."""
    return sum(a != b for a, b in zip(result, reference)) + abs(len(result) - len(reference))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--docs-per-file", type=int, default=200)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--perturb-peer", action="store_true",
                        help="self-check of the benchmark: drop one document from the last worker count's "
                             "output, so it differs, no speedup is printed for it and the run exits 1")
    args = parser.parse_args(argv)
    worker_counts = [int(w) for w in args.workers.split(",")]
    root = tempfile.mkdtemp(prefix="lmforge-scaling-")
    try:
        corpus = os.path.join(root, "corpus")
        os.makedirs(corpus)
        num_docs = make_corpus(corpus, args.files, args.docs_per_file)
        rows, reference = [], None
        for workers in worker_counts:
            out = os.path.join(root, f"out-{workers}")
            cfg = load_config(DataRunConfig, None, {
                "input": {"kind": "jsonl", "paths": [corpus]}, "steps": STEPS,
                "output": {"dir": out, "val_fraction": 0.01}, "workers": workers})
            start = time.perf_counter()
            stats = run_pipeline(cfg)
            seconds = time.perf_counter() - start
            result = outputs(out)
            if args.perturb_peer and len(rows) == len(worker_counts) - 1 and result:
                result = result[:-1]  # self-check: unequal work on purpose
            reference = reference if reference is not None else result
            # The same pipeline on the same input: every output document must match (tolerance 0).
            same = check(f"{workers} workers: output documents differing from {worker_counts[0]} workers'",
                         differing_lines(result, reference), 0)
            rows.append({"workers": workers, "seconds": round(seconds, 2), "docs_per_s": round(num_docs / seconds, 1),
                         "kept": stats["kept"], "identical_output": same.equal})
        base = rows[0]["docs_per_s"]
        cpu = cpu_name()
        print(f"{num_docs:,} documents in {args.files} files, {os.cpu_count()} CPUs ({cpu})")
        print(f"{'workers':>8} {'seconds':>8} {'docs/s':>9} {'speedup':>8} {'kept':>7} identical")
        for row in rows:
            row["speedup"] = round(row["docs_per_s"] / base, 2) if row["identical_output"] else None
            print(f"{row['workers']:>8} {row['seconds']:>8.2f} {row['docs_per_s']:>9,.1f} "
                  f"{format_ratio(row['speedup']):>8} {row['kept']:>7} {row['identical_output']}")
        print(json.dumps({"benchmark": "data_scaling", "documents": num_docs, "cpus": os.cpu_count(), "cpu": cpu,
                          "equal_outputs": all(row["identical_output"] for row in rows), "rows": rows}))
        return rows
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(exit_status(main(), key="identical_output"))
