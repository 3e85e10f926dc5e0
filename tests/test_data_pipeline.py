"""The data pipeline driver: stages, books, rejects, markers, outputs, report.

Steps registered in this file run in-process (workers=1): spawned workers would not import
this module. Multi-process and Ray runs use the built-in steps (test_data_pipeline_e2e.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest
import yaml

from helpers import documented_split_fraction

from lmforge.config import DataRunConfig, load_config, option
from lmforge.data.document import Document
from lmforge.data.pipeline import format_report, load_stats, run_pipeline, write_report_plot
from lmforge.data.steps import CorpusStep, DocStep, Drop, register_step
from lmforge.errors import ConfigError, DataError

CALLS_FILE = "LMFORGE_TEST_PIPELINE_CALLS"


@dataclass
class MinCharsOptions:
    min_chars: int = option(5, "drop shorter documents")


@register_step("test_min_chars", MinCharsOptions, "drop documents shorter than min_chars")
class MinChars(DocStep):
    def __init__(self, options: MinCharsOptions):
        self.options = options

    def __call__(self, doc: Document):
        calls = os.environ.get(CALLS_FILE)
        if calls:
            with open(calls, "a", encoding="utf-8") as f:
                f.write(f"{self.options.min_chars}:{doc.id}\n")
            if doc.text.lower() == "explode":
                raise RuntimeError("planted failure")
        if len(doc.text) < self.options.min_chars:
            return Drop("too_short", f"{len(doc.text)} < {self.options.min_chars}")
        return doc


@dataclass
class NoOptions:
    pass


@register_step("test_upper", NoOptions, "upper-case the text")
class Upper(DocStep):
    def __init__(self, options: NoOptions):
        self.options = options

    def __call__(self, doc: Document):
        return Document(doc.id, doc.text.upper(), doc.meta)


@register_step("test_exact", NoOptions, "drop exact duplicates, keeping the first")
class Exact(CorpusStep):
    def __init__(self, options: NoOptions):
        self.options = options

    def fingerprint(self, doc: Document):
        return (doc.id, doc.text)

    def decide(self, fingerprints):
        first: dict[str, str] = {}
        decisions = {}
        for ref, (doc_id, text) in fingerprints:
            if text in first:
                decisions[ref] = first[text]
            else:
                first[text] = doc_id
        return decisions

    def apply(self, doc: Document, decision):
        return Drop("exact_duplicate", f"of {decision}")


def write_jsonl(path, texts):
    with open(path, "w", encoding="utf-8") as f:
        for text in texts:
            f.write(json.dumps({"text": text}) + "\n")
    return str(path)


@pytest.fixture
def corpus(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_jsonl(src / "a.jsonl", ["hello world", "tiny", "same text here", "another document"])
    write_jsonl(src / "b.jsonl", ["Same Text Here", "b unique doc", "no"])
    (src / "c.jsonl").write_text('{"text": "c doc one"}\n{bad json\n{"text": "hello world"}\n', encoding="utf-8")
    return src


def make_config(corpus, out, steps, **kw) -> DataRunConfig:
    tree = {"input": {"kind": "jsonl", "paths": [str(corpus)], "on_error": "skip"},
            "steps": steps, "output": {"dir": str(out), "val_fraction": 0.3}, "workers": 1, **kw}
    return load_config(DataRunConfig, None, tree)


STEPS = [{"step": "test_upper"}, {"step": "test_min_chars", "min_chars": 5}, {"step": "test_exact"},
         {"step": "test_min_chars", "min_chars": 10}]


def read_split(out, split):
    docs = []
    for name in sorted(os.listdir(out / split)):
        with open(out / split / name, encoding="utf-8") as f:
            docs += [json.loads(line) for line in f]
    return docs


def test_stages_books_and_outputs(corpus, tmp_path):
    out = tmp_path / "out"
    stats = run_pipeline(make_config(corpus, out, STEPS))
    # 10 lines read; 1 bad JSON line fails in the reader.
    assert (stats["read"], stats["failed"], stats["failed_by_reason"]) == (10, 1, {"bad_json": 1})
    steps = stats["steps"]
    assert [s["step"] for s in steps] == ["test_upper", "test_min_chars", "test_exact", "test_min_chars"]
    assert (steps[0]["in"], steps[0]["kept"], steps[0]["changed"]) == (9, 9, 9)
    assert steps[1]["dropped"] == {"too_short": 2}          # "tiny", "no"
    # Upper-cased, "SAME TEXT HERE" (b) repeats a's; "HELLO WORLD" (c) repeats a's: first kept.
    assert steps[2]["dropped"] == {"exact_duplicate": 2}
    assert steps[3]["dropped"] == {"too_short": 1}          # "C DOC ONE" (9 chars)
    assert stats["kept"] == 4 and stats["balanced"]
    assert stats["read"] == stats["kept"] + stats["dropped"] + stats["failed"]
    kept = read_split(out, "train") + read_split(out, "val")
    assert sorted(d["text"] for d in kept) == ["ANOTHER DOCUMENT", "B UNIQUE DOC", "HELLO WORLD", "SAME TEXT HERE"]
    for split in ("train", "val"):
        for d in read_split(out, split):
            assert (documented_split_fraction(0, d["text"]) < 0.3) == (split == "val")
    assert stats["output"]["train"]["docs"] + stats["output"]["val"]["docs"] == 4
    # Rejects carry step, reason and detail; duplicates name the kept document.
    rejects = [json.loads(line) for name in sorted(os.listdir(out / "rejects"))
               for line in open(out / "rejects" / name, encoding="utf-8")]
    dup = [r for r in rejects if r["meta"]["rejected"]["reason"] == "exact_duplicate"]
    assert sorted(r["meta"]["rejected"]["detail"] for r in dup) == sorted(
        [f"of {d['id']}" for d in kept if d["text"] in ("HELLO WORLD", "SAME TEXT HERE")])
    assert len(rejects) == stats["dropped"] == 5
    assert load_stats(str(out)) == json.loads((out / "stats.json").read_text())
    # Intermediate stage files are gone once the next stage finished; markers stay.
    work = sorted(p.name for p in (out / ".work" / "stage-0").iterdir())
    assert not [n for n in work if n.endswith(".jsonl") or n.endswith(".pkl")]
    assert len([n for n in work if n.endswith(".done.json")]) == 3


def test_rerun_skips_finished_shards_and_finishes_a_crashed_run(corpus, tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv(CALLS_FILE, str(calls))
    write_jsonl(corpus / "b.jsonl", ["Same Text Here", "b unique doc", "explode"])
    cfg = make_config(corpus, out, STEPS)
    with pytest.raises(RuntimeError, match="planted failure"):
        run_pipeline(cfg)
    assert os.path.exists(out / ".work" / "stage-0" / "part-00000.done.json")   # shard a finished
    assert not os.path.exists(out / ".work" / "stage-0" / "part-00001.done.json")
    assert not any(n.startswith(".") for n in os.listdir(out / ".work" / "stage-0") if "part-00001" in n)
    write_jsonl(corpus / "b.jsonl", ["Same Text Here", "b unique doc", "fixed now"])
    calls.write_text("")
    stats = run_pipeline(cfg)
    seen = calls.read_text().split()
    # Stage 1 (min_chars 5) of shard a was not redone; shard b's was; stage 2 ran for all.
    assert not [i for i in seen if i.startswith("5:") and "a.jsonl" in i]
    assert any(i.startswith("5:") and "b.jsonl" in i for i in seen)
    assert any(i.startswith("10:") and "a.jsonl" in i for i in seen)
    assert stats["balanced"] and stats["read"] == 10
    calls.write_text("")
    assert run_pipeline(cfg) == stats                           # a finished run redoes nothing
    assert calls.read_text() == ""


def test_a_different_pipeline_in_the_same_dir_is_refused(corpus, tmp_path):
    out = tmp_path / "out"
    run_pipeline(make_config(corpus, out, STEPS[:2]))
    with pytest.raises(ConfigError, match="different pipeline"):
        run_pipeline(make_config(corpus, out, STEPS))
    run_pipeline(make_config(corpus, out, STEPS[:2], workers=2))  # execution settings may change
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a pipeline output"):
        run_pipeline(make_config(corpus, tmp_path / "other", STEPS))


@pytest.mark.parametrize("steps, words", [
    ([], "has no steps"),
    ([{"step": "nope"}], "unknown data step 'nope'"),
    ([{"step": "test_min_chars", "min_chars": "x"}], "'steps[0].min_chars': expected an integer"),
    ([{"step": "test_min_chars", "mni_chars": 3}], "unknown config key 'steps[0].mni_chars'"),
    (["test_upper"], "expected a mapping with 'step: NAME'"),
])
def test_bad_steps_are_one_line_config_errors(corpus, tmp_path, steps, words):
    with pytest.raises(ConfigError) as err:
        run_pipeline(make_config(corpus, tmp_path / "out", steps))
    assert words in str(err.value) and "\n" not in str(err.value)
    assert not os.path.exists(tmp_path / "out")


def test_parquet_output(corpus, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "out"
    run_pipeline(make_config(corpus, out, STEPS[:2], output={"dir": str(out), "format": "parquet",
                                                          "val_fraction": 0.0}))
    tables = [pq.read_table(out / "train" / n).to_pylist() for n in sorted(os.listdir(out / "train"))]
    rows = [r for t in tables for r in t]
    assert len(rows) == 7 and set(rows[0]) == {"id", "text", "meta"}
    assert json.loads(rows[0]["meta"])["source"].endswith("a.jsonl")


def test_report_table_and_plot(corpus, tmp_path):
    out = tmp_path / "out"
    stats = run_pipeline(make_config(corpus, out, STEPS))
    table = format_report(stats)
    assert "read 10 = kept 4 + dropped 5 + failed 1 (bad_json 1)" in table
    assert "exact_duplicate 2" in table
    png = write_report_plot(stats, str(tmp_path / "r.png"))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(DataError, match="not found"):
        load_stats(str(tmp_path / "nothing"))


def test_yaml_pipeline_file_loads(tmp_path, corpus):
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump({"input": {"kind": "jsonl", "paths": [str(corpus)], "on_error": "skip"},
                                    "steps": STEPS, "output": {"dir": str(tmp_path / "o")}, "workers": 1}))
    cfg = load_config(DataRunConfig, path)
    assert run_pipeline(cfg)["kept"] == 4
