"""The data pipeline end to end with the built-in steps: process pool, Ray, CLI and report.

The corpus is generated: prose-like documents that pass the quality filters, planted exact
and near duplicates, spam, and PII, spread over several input files (shards).
"""

from __future__ import annotations

import json
import os
import random

import pytest
import yaml

from lmforge.cli import main
from lmforge.config import DataRunConfig, load_config
from lmforge.data.pipeline import run_pipeline

WORDS = ("the of and to in is that it was for on are with as his they be at one have this from "
         "or had by word but what some we can out other were all there when up use your how said "
         "each she which do their time if will way about many then them write would like so these "
         "her long make thing see him two has look more day could go come did number sound no most "
         "people my over know water than call first who may down side been now find river garden "
         "morning village teacher window station mountain harbour letter kitchen journey").split()


def prose(rng: random.Random, num_sentences: int = 12) -> str:
    sentences = []
    for _ in range(num_sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 16))]
        sentences.append(" ".join(words).capitalize() + ".")
    # Two paragraphs, so line- and paragraph-based rules see real structure.
    half = len(sentences) // 2
    return " ".join(sentences[:half]) + "\n\n" + " ".join(sentences[half:])


def near_copy(rng: random.Random, text: str, changes: int) -> str:
    words = text.split(" ")
    for i in rng.sample(range(len(words)), changes):
        words[i] = rng.choice(WORDS)
    return " ".join(words)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(7)
    root = tmp_path_factory.mktemp("corpus")
    originals = [prose(rng) for _ in range(24)]
    files: list[list[str]] = [[], [], [], []]
    for i, text in enumerate(originals):
        files[i % 4].append(text)
    files[1].append(originals[0].upper())                      # exact duplicate after normalisation
    files[2].append(near_copy(rng, originals[4], 2))           # near duplicate (~2 of ~150 words)
    files[3].append("buy now " * 40)                           # spam: fails the quality rules
    files[3].append("short line")                              # too few words
    files[0].append(prose(rng) + "\n\nWrite to jane.doe@example.com or call +44 20 7946 0958.")
    files[1].append("\n\n".join(["The story of the " + prose(rng, 4)] * 4))   # one paragraph four times
    for i, docs in enumerate(files):
        with open(root / f"part{i}.jsonl", "w", encoding="utf-8") as f:
            for text in docs:
                f.write(json.dumps({"text": text}) + "\n")
        with open(root / f"part{i}.jsonl", "a", encoding="utf-8") as f:
            f.write("{not json\n")
    return root


STEPS = [
    {"step": "clean"},
    {"step": "gopher_quality"},
    {"step": "gopher_repetition"},
    {"step": "pii"},
    {"step": "exact_dedup"},
    {"step": "minhash_dedup"},
]


def config(corpus, out, **kw) -> DataRunConfig:
    tree = {"input": {"kind": "jsonl", "paths": [str(corpus)], "on_error": "skip"}, "steps": STEPS,
            "output": {"dir": str(out), "val_fraction": 0.2}, **kw}
    return load_config(DataRunConfig, None, tree)


def outputs(out) -> dict[str, list[dict]]:
    result = {}
    for split in ("train", "val"):
        result[split] = [json.loads(line) for name in sorted(os.listdir(out / split))
                         for line in open(out / split / name, encoding="utf-8")]
    return result


@pytest.fixture(scope="module")
def serial_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "out"
    return out, run_pipeline(config(corpus, out, workers=1))


def test_built_in_steps_do_their_jobs(serial_run):
    out, stats = serial_run
    by_step = {s["step"]: s for s in stats["steps"]}
    assert stats["read"] == 24 + 6 + 4 and stats["failed_by_reason"] == {"bad_json": 4}
    assert by_step["gopher_quality"]["dropped"] == {"stop_words": 1, "too_few_words": 1}   # spam, short
    assert by_step["gopher_repetition"]["dropped"].get("dup_para_frac") == 1
    assert by_step["exact_dedup"]["dropped"] == {"exact_duplicate": 1}
    assert by_step["minhash_dedup"]["dropped"] == {"near_duplicate": 1}
    assert by_step["pii"]["changed"] == 1
    assert stats["kept"] == 25 and stats["balanced"]
    texts = [d["text"] for split in outputs(out).values() for d in split]
    masked = [t for t in texts if "<EMAIL>" in t]
    assert len(masked) == 1 and "jane.doe" not in masked[0] and "<PHONE>" in masked[0]


def test_process_pool_gives_the_same_output(corpus, serial_run, tmp_path):
    out, stats = serial_run
    pooled = run_pipeline(config(corpus, tmp_path / "out", workers=2))
    assert pooled == {**stats, "output": {**stats["output"], "dir": str(tmp_path / "out")}}
    assert outputs(tmp_path / "out") == outputs(out)


@pytest.mark.slow
def test_ray_executor_gives_the_same_output(corpus, serial_run, tmp_path):
    pytest.importorskip("ray")
    out, stats = serial_run
    ray_stats = run_pipeline(config(corpus, tmp_path / "out", executor="ray", workers=2))
    assert ray_stats["steps"] == stats["steps"] and ray_stats["kept"] == stats["kept"]
    assert outputs(tmp_path / "out") == outputs(out)


def test_cli_run_and_report(corpus, tmp_path, capsys):
    pipeline = tmp_path / "pipeline.yaml"
    out = tmp_path / "out"
    pipeline.write_text(yaml.safe_dump({"input": {"kind": "jsonl", "paths": [str(corpus)], "on_error": "skip"},
                                        "steps": STEPS, "output": {"dir": str(out)}, "workers": 1}))
    assert main(["data", "run", str(pipeline)]) == 0
    printed = capsys.readouterr().out
    assert "read 34 = kept 25" in printed
    assert "read 34 = kept 25 + dropped 5 + failed 4 (bad_json 4)" in printed
    assert main(["data", "report", str(out)]) == 0
    assert "minhash_dedup" in capsys.readouterr().out
    assert (out / "report.png").stat().st_size > 10_000
    # A bad pipeline is one line and exit status 2.
    pipeline.write_text(yaml.safe_dump({"steps": [{"step": "gopher_quality", "min_words": "many"}]}))
    assert main(["data", "run", str(pipeline)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "steps[0].min_words" in err


def test_output_feeds_prepare_with_the_same_split(serial_run, tmp_path):
    from lmforge.config import PrepareConfig
    from lmforge.data.prepare import prepare

    out, _ = serial_run
    docs = outputs(out)
    prepared = tmp_path / "documents"
    prepare(load_config(PrepareConfig, None, {
        "source": {"kind": "jsonl", "paths": [str(out / "train"), str(out / "val")]},  # no empty parts
        "out_dir": str(prepared), "val_fraction": 0.2}))
    for split in ("train", "val"):
        again = [json.loads(line)["text"] for line in open(prepared / f"{split}.jsonl", encoding="utf-8")]
        assert sorted(again) == sorted(d["text"] for d in docs[split])


def test_cli_errors_name_the_pipeline_keys(tmp_path, capsys):
    assert main(["data", "run", "--input.kind", "jsonl", "--input.paths", str(tmp_path / "missing"),
                 "--steps", "[{step: clean}]", "--output.dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--input.paths" in err and "--source." not in err
