"""Sources and `prepare`: determinism, split by file, and every kind of bad input
(docs/architecture.md, 'Sources and readers' and 'Preparing documents')."""

from __future__ import annotations

import gzip
import json
import os
import sys

import pytest

from helpers import documented_split_fraction, read_source as read, write_file as write

from lmforge.config import PrepareConfig, SourceConfig
from lmforge.data import prepare, split_fraction
from lmforge.errors import DataError


def write_jsonl(path, rows: list) -> str:
    return write(path, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


# --------------------------------------------------------------------------- stdlib


def test_stdlib_reads_own_python_files_deterministically():
    docs, stats = read(SourceConfig(kind="stdlib"))
    again, _ = read(SourceConfig(kind="stdlib"))
    assert [d.id for d in docs] == [d.id for d in again]
    assert len(docs) > 300
    ids = [d.id for d in docs]
    assert all(i.endswith(".py") for i in ids)
    assert not any(i.startswith("test/") or "site-packages" in i or "/tests/" in i for i in ids)
    assert "os.py" in ids and "json/decoder.py" in ids
    doc = docs[ids.index("os.py")]
    assert os.path.isabs(doc.meta["source"])
    with open(doc.meta["source"], encoding="utf-8") as f:
        assert f.read() == doc.text
    # empty __init__.py files are counted, never silently dropped
    assert set(stats.skipped) <= {"empty", "not_utf8"}


def test_max_documents_stops_early():
    docs, stats = read(SourceConfig(kind="stdlib", max_documents=7))
    assert len(docs) == 7 and stats.kept == 7
    full, _ = read(SourceConfig(kind="stdlib", max_documents=20))
    assert [d.id for d in docs] == [d.id for d in full[:7]]


def test_stdlib_skips_bad_files_even_under_raise(tmp_path, monkeypatch):
    import sysconfig
    write(tmp_path / "good.py", "x = 1\n")
    write(tmp_path / "latin1.py", b"# caf\xe9\n")
    write(tmp_path / "__init__.py", "")
    write(tmp_path / "test" / "test_x.py", "y = 2\n")
    write(tmp_path / "site-packages" / "pkg.py", "z = 3\n")
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    docs, stats = read(SourceConfig(kind="stdlib", on_error="raise"))
    assert [d.id for d in docs] == ["good.py"]
    assert stats.skipped == {"empty": 1, "not_utf8": 1}
    assert sorted(stats.skipped_examples) == [("__init__.py", "empty"), ("latin1.py", "not_utf8")]


# --------------------------------------------------------------------------- text


def test_text_directory_recursive_sorted_skipping_hidden(tmp_path):
    write(tmp_path / "b.txt", "bee")
    write(tmp_path / "a" / "z.md", "zed")
    write(tmp_path / ".git" / "HEAD", "ref")
    write(tmp_path / ".hidden.txt", "no")
    docs, _ = read(SourceConfig(kind="text", paths=[str(tmp_path)]))
    assert [(os.path.relpath(d.id, tmp_path), d.text) for d in docs] == [("a/z.md", "zed"), ("b.txt", "bee")]
    assert docs[0].meta == {"source": docs[0].id}


def test_text_glob_and_dedup(tmp_path):
    a = write(tmp_path / "a.txt", "one")
    write(tmp_path / "b.txt", "two")
    write(tmp_path / "c.md", "three")
    docs, _ = read(SourceConfig(kind="text", paths=[str(tmp_path / "*.txt"), a]))
    assert [d.text for d in docs] == ["one", "two"]


@pytest.fixture
def bad_text_dir(tmp_path):
    d = tmp_path / "corpus"
    write(d / "1_good.txt", "hello world\n")
    write(d / "2_latin1.txt", b"caf\xe9 au lait\n")
    write(d / "3_binary.bin", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    write(d / "4_empty.txt", "")
    write(d / "5_blank.txt", "  \n\t\n")
    write(d / "6_good.md", "# title\n\u00e9t\u00e9\n")
    return d


def test_text_bad_files_skip_counts_by_reason(bad_text_dir):
    docs, stats = read(SourceConfig(kind="text", paths=[str(bad_text_dir)], on_error="skip"))
    assert [d.text for d in docs] == ["hello world\n", "# title\n\u00e9t\u00e9\n"]
    assert stats.read == 6 and stats.kept == 2
    assert stats.skipped == {"not_utf8": 1, "binary": 1, "empty": 2}
    reasons = {os.path.basename(i): r for i, r in stats.skipped_examples}
    assert reasons == {"2_latin1.txt": "not_utf8", "3_binary.bin": "binary",
                       "4_empty.txt": "empty", "5_blank.txt": "empty"}


@pytest.mark.parametrize("name, content, words", [
    ("latin1.txt", b"caf\xe9\n", "not valid UTF-8 (byte 3)"),
    ("image.bin", b"GIF89a\x00\x01", "binary"),
    ("empty.txt", b"", "empty"),
])
def test_text_bad_file_raise_names_file(tmp_path, name, content, words):
    write(tmp_path / "ok.txt", "fine")
    write(tmp_path / name, content)
    with pytest.raises(DataError) as err:
        read(SourceConfig(kind="text", paths=[str(tmp_path)], on_error="raise"))
    message = str(err.value)
    assert name in message and words in message and "on_error: skip" in message
    assert "\n" not in message


def test_unreadable_file(tmp_path, monkeypatch):
    import builtins

    from lmforge.data.readers import text as text_reader

    write(tmp_path / "ok.txt", "fine")
    locked = write(tmp_path / "locked.txt", "secret")

    def guarded_open(path, *args, **kwargs):  # chmod 000 does not stop root, so refuse here
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", path)
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(text_reader, "open", guarded_open, raising=False)
    docs, stats = read(SourceConfig(kind="text", paths=[str(tmp_path)], on_error="skip"))
    assert [d.text for d in docs] == ["fine"] and stats.skipped == {"unreadable": 1}
    with pytest.raises(DataError, match=r"cannot read .*locked.txt \(Permission denied\)"):
        read(SourceConfig(kind="text", paths=[str(tmp_path)], on_error="raise"))


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_missing_paths_always_raise(tmp_path, on_error):
    write(tmp_path / "a.txt", "a")
    cases = [
        ([str(tmp_path / "nope.txt")], "nope.txt' does not exist"),
        ([str(tmp_path / "*.jsonl")], "matches no files"),
        ([], "needs input files"),
    ]
    for paths, words in cases:
        with pytest.raises(DataError, match=words):
            read(SourceConfig(kind="text", paths=paths, on_error=on_error))
    with pytest.raises(DataError, match="holds no files ending in .jsonl"):
        read(SourceConfig(kind="jsonl", paths=[str(tmp_path)], on_error=on_error))


# --------------------------------------------------------------------------- jsonl


def test_jsonl_fields_ids_and_gzip(tmp_path):
    plain = write_jsonl(tmp_path / "a.jsonl", [{"content": "first"}, "", {"content": "second", "x": 1}])
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"content": "zipped"}) + "\n")
    docs, stats = read(SourceConfig(kind="jsonl", paths=[str(tmp_path)], text_field="content"))
    assert [(d.id, d.text) for d in docs] == [
        (f"{plain}:1", "first"), (f"{plain}:3", "second"), (f"{tmp_path / 'b.jsonl.gz'}:1", "zipped")]
    assert docs[1].meta == {"source": plain, "line": 3}
    assert stats.read == 3  # the blank line is not a document


def bad_jsonl(tmp_path) -> str:
    return write_jsonl(tmp_path / "data.jsonl", [
        {"text": "good one"},
        '{"text": "unterminated',
        {"body": "wrong field"},
        {"text": 42},
        '["not", "an", "object"]',
        {"text": "   "},
        '{"text": "lone \\ud800 surrogate"}',
        {"text": "good two"},
    ])


def test_jsonl_bad_lines_skip(tmp_path):
    path = bad_jsonl(tmp_path)
    docs, stats = read(SourceConfig(kind="jsonl", paths=[path], on_error="skip"))
    assert [d.text for d in docs] == ["good one", "good two"]
    assert stats.read == 8
    assert stats.skipped == {"bad_json": 1, "missing_field": 3, "empty": 1, "not_utf8": 1}
    assert stats.skipped_examples[:2] == [(f"{path}:2", "bad_json"), (f"{path}:3", "missing_field")]


@pytest.mark.parametrize("line, words", [
    ('{"text": "unterminated', "data.jsonl:2 is not valid JSON"),
    ('{"body": "x"}', "data.jsonl:2 has no string field 'text' (found: body)"),
    (b'{"text": "caf\xe9"}', "data.jsonl:2 is not valid UTF-8"),
])
def test_jsonl_bad_line_raise_names_file_and_line(tmp_path, line, words):
    raw = line if isinstance(line, bytes) else line.encode()
    path = write(tmp_path / "data.jsonl", b'{"text": "ok"}\n' + raw + b"\n")
    with pytest.raises(DataError) as err:
        read(SourceConfig(kind="jsonl", paths=[path]))
    assert words in str(err.value) and "on_error: skip" in str(err.value)


def test_truncated_gzip_keeps_documents_before_the_cut(tmp_path):
    lines = [json.dumps({"text": f"document {i} " + os.urandom(40).hex()}) + "\n" for i in range(400)]
    blob = gzip.compress("".join(lines).encode())
    path = write(tmp_path / "cut.jsonl.gz", blob[: len(blob) * 2 // 3])
    docs, stats = read(SourceConfig(kind="jsonl", paths=[path], on_error="skip"))
    assert 0 < len(docs) < 400
    assert [d.text for d in docs] == [json.loads(line)["text"] for line in lines[: len(docs)]]
    assert stats.skipped == {"truncated_gzip": 1}
    assert stats.read == len(docs) + 1
    with pytest.raises(DataError, match=r"cut.jsonl.gz is a truncated gzip file \(it ends after line \d+\)"):
        read(SourceConfig(kind="jsonl", paths=[path], on_error="raise"))


# --------------------------------------------------------------------------- parquet


def test_parquet_rows_nulls_and_missing_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = str(tmp_path / "t.parquet")
    pq.write_table(pa.table({"text": ["alpha", None, "gamma"], "n": [1, 2, 3]}), path)
    docs, stats = read(SourceConfig(kind="parquet", paths=[path], on_error="skip"))
    assert [(d.id, d.text) for d in docs] == [(f"{path}:0", "alpha"), (f"{path}:2", "gamma")]
    assert stats.skipped == {"missing_field": 1}
    with pytest.raises(DataError, match=r"has no string column 'body' \(found: text, n\)"):
        read(SourceConfig(kind="parquet", paths=[path], text_field="body"))
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read(SourceConfig(kind="parquet", paths=[write(tmp_path / "junk.parquet", b"PAR1 nonsense")]))


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = write(tmp_path / "t.parquet", b"")
    with pytest.raises(DataError, match=r"pip install lmforge\[parquet\]"):
        read(SourceConfig(kind="parquet", paths=[path]))


# --------------------------------------------------------------------------- prepare


def test_prepare_split_is_deterministic_and_by_file(tmp_path):
    source = SourceConfig(kind="stdlib", max_documents=60)
    a = prepare(PrepareConfig(source=source, out_dir=str(tmp_path / "a"), val_fraction=0.2, split_seed=3))
    b = prepare(PrepareConfig(source=source, out_dir=str(tmp_path / "b"), val_fraction=0.2, split_seed=3))
    for split in ("train", "val"):
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (tmp_path / "b" / f"{split}.jsonl").read_bytes()
    assert a == b
    rows = {s: [json.loads(x) for x in open(tmp_path / "a" / f"{s}.jsonl", encoding="utf-8")] for s in ("train", "val")}
    assert 0 < len(rows["val"]) < len(rows["train"])
    # each file lands on the side its hash says, and its text is whole
    for split, docs in rows.items():
        for row in docs:
            assert (documented_split_fraction(3, row["text"]) < 0.2) == (split == "val")
            with open(row["meta"]["source"], encoding="utf-8") as f:
                assert f.read() == row["text"]
    assert a["kept"] == 60 == len(rows["train"]) + len(rows["val"])
    assert a["read"] == a["kept"] + sum(a["skipped"].values())
    assert a["splits"]["val"] == {"num_docs": len(rows["val"]),
                                  "num_bytes": sum(len(r["text"].encode()) for r in rows["val"])}
    assert json.loads((tmp_path / "a" / "stats.json").read_text()) == a
    assert sorted(os.listdir(tmp_path / "a")) == ["stats.json", "train.jsonl", "val.jsonl"]  # no temp files
    c = prepare(PrepareConfig(source=source, out_dir=str(tmp_path / "c"), val_fraction=0.2, split_seed=4))
    assert c["splits"] != a["splits"]


def test_split_fraction_is_the_documented_keyed_blake2b_and_uniform():
    texts = [f"document number {i}" for i in range(4000)] + ["", "caf\u00e9"]
    for seed in (0, 3):
        assert [split_fraction(seed, t) for t in texts] == [documented_split_fraction(seed, t) for t in texts]
    fractions = [split_fraction(0, t) for t in texts[:4000]]
    assert all(0.0 <= f < 1.0 for f in fractions)
    # uniform on [0, 1): mean 1/2 (sd 0.0046 for 4000 draws), a fifth below 0.2 (sd 0.0063)
    assert abs(sum(fractions) / 4000 - 0.5) < 0.02
    assert abs(sum(f < 0.2 for f in fractions) / 4000 - 0.2) < 0.025
    assert split_fraction(0, "same text") != split_fraction(1, "same text")  # the seed is the key


@pytest.mark.parametrize("val_fraction", [0.0, 0.99])
def test_prepare_keeps_both_splits_non_empty(tmp_path, val_fraction):
    for name in ("a", "b", "c"):
        write(tmp_path / "in" / f"{name}.txt", f"text {name}")
    stats = prepare(PrepareConfig(source=SourceConfig(kind="text", paths=[str(tmp_path / "in")]),
                                  out_dir=str(tmp_path / "out"), val_fraction=val_fraction))
    num_docs = {s: stats["splits"][s]["num_docs"] for s in ("train", "val")}
    assert min(num_docs.values()) >= 1 and sum(num_docs.values()) == 3
    for split in ("train", "val"):
        lines = (tmp_path / "out" / f"{split}.jsonl").read_text().splitlines()
        assert len(lines) == num_docs[split]


def test_prepare_stats_count_skips(tmp_path, bad_text_dir):
    stats = prepare(PrepareConfig(source=SourceConfig(kind="text", paths=[str(bad_text_dir)], on_error="skip"),
                                  out_dir=str(tmp_path / "out"), val_fraction=0.5))
    assert (stats["read"], stats["kept"]) == (6, 2)
    assert stats["skipped"] == {"binary": 1, "empty": 2, "not_utf8": 1}
    assert len(stats["skipped_examples"]) == 4
    assert stats["splits"]["train"]["num_docs"] + stats["splits"]["val"]["num_docs"] == 2


def test_prepare_empty_corpus(tmp_path):
    write(tmp_path / "in" / "a.txt", "   ")
    write(tmp_path / "in" / "b.txt", b"\xff\xfe")
    cfg = PrepareConfig(source=SourceConfig(kind="text", paths=[str(tmp_path / "in")], on_error="skip"),
                        out_dir=str(tmp_path / "out"))
    with pytest.raises(DataError, match=r"corpus is empty: read 2 documents and skipped all of them "
                                        r"\(empty 1, not_utf8 1\)"):
        prepare(cfg)
    assert os.listdir(tmp_path / "out") == []  # nothing half-written left behind
