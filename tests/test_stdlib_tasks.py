"""The stdlib fine-tuning tasks: exact labels on hand-made code, balance, determinism, and
no file on both sides of a split."""

import json
from collections import Counter

from lmforge.finetune import stdlib_tasks as S

TINY = '''import os


@decorator
def greet(name, *args, greeting="hi", **kw):
    """Say hello."""
    return f"{greeting} {name}"


class Box:
    async def put(self, item, /, force=False, *, timeout):
        self.items.append(item)  # keep it
'''


def _package_files(packages=("alpha", "beta"), per_package=12):
    """Files of two fake packages: each module holds 5 six-line groups of distinct code."""
    files = []
    for package in packages:
        for m in range(per_package):
            body = "\n".join(f"value_{package}_{m}_{k} = compute_{package}({k}, {m}) + offset_{k}" for k in range(30))
            files.append((f"{package}/mod{m}.py", body + "\n"))
    return files


def test_signature_json_of_a_hand_made_function():
    found = {node.name: (source, node) for source, node in S.functions_of(TINY)}
    assert set(found) == {"greet", "put"}
    source, node = found["greet"]
    assert source.startswith('def greet(name, *args, greeting="hi", **kw):')  # decorator left out
    assert S.signature_json(node) == '{"name": "greet", "params": ["name", "*args", "greeting", "**kw"]}'
    source, node = found["put"]
    assert source.startswith("async def put(self, item, /, force=False, *, timeout):")  # dedented method
    assert json.loads(S.signature_json(node)) == {"name": "put", "params": ["self", "item", "force", "timeout"]}


def test_functions_of_skips_long_functions():
    text = "def g(b):\n    return b  # b\n\ndef h(c):\n" + "    c += 1\n" * 50
    assert [(source, node.name) for source, node in S.functions_of(text, max_chars=100)] == \
        [("def g(b):\n    return b  # b", "g")]


def test_parse_and_grade_signature():
    expected = '{"name": "greet", "params": ["name", "*args"]}'
    assert S.grade_signature(' {"name": "greet", "params": ["name", "*args"]}\nmore', expected) == \
        {"valid": True, "name": True, "exact": True}
    assert S.grade_signature('{"name": "greet", "params": ["name"]}', expected) == \
        {"valid": True, "name": True, "exact": False}
    assert S.grade_signature('{"name": "hello", "params": []}', expected) == \
        {"valid": True, "name": False, "exact": False}
    for bad in ('def greet(name):', '{"name": "greet"}', '{"name": "greet", "params": "name"}',
                '{"name": "greet", "params": [], "x": 1}', '["greet"]', ''):
        assert S.parse_signature(bad) is None, bad


def test_tagged_lines_of_a_hand_made_snippet():
    lines = list(S.tagged_lines(TINY))
    assert (["import", "os"], ["KEYWORD", "NAME"]) in lines
    assert (["return", 'f"{greeting} {name}"'], ["KEYWORD", "STRING"]) in lines  # (the builder drops it: spaces)
    put = ["self", ".", "items", ".", "append", "(", "item", ")", "# keep it"]
    assert (put, ["NAME", "OP", "ATTR", "OP", "CALL", "OP", "NAME", "OP", "COMMENT"]) in lines
    assert (["class", "Box", ":"], ["KEYWORD", "DEF", "OP"]) in lines
    assert (['"""Say hello."""'], ["STRING"]) in lines  # a docstring is one token, never words
    assert (["async", "def", "put", "(", "self", ",", "item", ",", "/", ",", "force", "=", "False", ",", "*", ",",
             "timeout", ")", ":"], ["KEYWORD", "KEYWORD", "DEF", "OP", "NAME", "OP", "NAME", "OP", "OP", "OP", "NAME",
                                    "OP", "KEYWORD", "OP", "OP", "OP", "NAME", "OP", "OP"]) in lines


def test_token_classification_keeps_whitespace_free_lines_and_has_no_val_line_in_train():
    files = [(f"m{i}.py", TINY + f"x_{i} = compute(1, 2.5) + y . z\nshared = call(a, b)\n") for i in range(20)]
    out = S.build_token_classification(files, min_tokens=2, val_fraction=0.5)
    assert out["train"] and out["val"]
    for split in ("train", "val"):
        for example in out[split]:
            assert len(example["tokens"]) == len(example["tags"])
            assert all(t and not any(c.isspace() for c in t) for t in example["tokens"])
            assert set(example["tags"]) <= set(S.TOKEN_TAGS)
            assert S.is_val_file(example["source"], 0, 0.5) == (split == "val")
    train_lines = {tuple(e["tokens"]) for e in out["train"]}
    assert not train_lines & {tuple(e["tokens"]) for e in out["val"]}  # `shared = call(a, b)`: train only
    assert (["x_3", "=", "compute", "(", "1", ",", "2.5", ")", "+", "y", ".", "z"],
            ["NAME", "OP", "CALL", "OP", "NUMBER", "OP", "NUMBER", "OP", "OP", "NAME", "OP", "ATTR"]) in \
        [(e["tokens"], e["tags"]) for e in out["train"] + out["val"]]


def test_sequence_classification_is_balanced_split_by_file_and_deterministic():
    files = _package_files() + [("gamma/mod0.py", "ignored = 1\n" * 60), ("top.py", "x = 1\n" * 60)]
    out = S.build_sequence_classification(files, packages=("alpha", "beta"), max_train_per_class=1000,
                                          val_fraction=0.3)
    for split in ("train", "val"):
        counts = Counter(e["label"] for e in out[split])
        assert set(counts) == {"alpha", "beta"} and counts["alpha"] == counts["beta"] > 0
        for example in out[split]:
            assert example["source"].startswith(example["label"] + "/")
            assert S.is_val_file(example["source"], 0, 0.3) == (split == "val")
            assert len(example["text"].splitlines()) == 6
    assert not {e["source"] for e in out["train"]} & {e["source"] for e in out["val"]}
    assert out == S.build_sequence_classification(files, packages=("alpha", "beta"), max_train_per_class=1000,
                                                  val_fraction=0.3)
    other_seed = S.build_sequence_classification(files, packages=("alpha", "beta"), max_train_per_class=1000,
                                                 val_fraction=0.3, seed=1)
    assert other_seed != out


def test_sequence_classification_on_the_real_stdlib_is_balanced_and_split_by_file():
    out = S.build_sequence_classification(S.stdlib_files())
    for split, cap in (("train", 800), ("val", 150)):
        counts = Counter(e["label"] for e in out[split])
        assert counts == {p: cap for p in S.CLASSIFICATION_PACKAGES}, counts
    assert not {e["source"] for e in out["train"]} & {e["source"] for e in out["val"]}


def test_sft_examples_hold_the_ast_answer_and_val_functions_are_new():
    files = [(f"m{i}.py", TINY + f"\ndef only_in_{i}(a{i}, b=2):\n    return a{i}\n") for i in range(16)]
    out = S.build_sft(files, val_fraction=0.5)
    assert out["train"] and out["val"]
    by_name = {json.loads(e["response"])["name"]: e for e in out["train"] + out["val"]}
    assert json.loads(by_name["only_in_3"]["response"]) == {"name": "only_in_3", "params": ["a3", "b"]}
    assert by_name["only_in_3"]["prompt"] == f"def only_in_3(a3, b=2):\n    return a3\n\n{S.SFT_INSTRUCTION}\n"
    # greet and put are in every file: once, on the train side; val holds only functions of its own files
    names = Counter(json.loads(e["response"])["name"] for e in out["train"])
    assert names["greet"] == 1 and names["put"] == 1
    assert all(json.loads(e["response"])["name"].startswith("only_in_") for e in out["val"])
    assert all(S.is_val_file(e["source"], 0, 0.5) for e in out["val"])
    assert not {e["source"] for e in out["train"]} & {e["source"] for e in out["val"]}


def test_domain_split_separates_english_topics_from_code(tmp_path):
    topics = {f"topic{i}": f"The {i}th statement is described here in English.\n" for i in range(30)}
    files = _package_files() + [(S.DOMAIN_FILE, f"# Autogenerated\ntopics = {topics!r}\n")]
    out = S.build_domain_split(files, val_fraction=0.3, max_general_val_bytes=0)
    domain = out["domain"]["train"] + out["domain"]["val"]
    assert sorted(d["text"] for d in domain) == sorted(topics.values())
    assert out["domain"]["train"] and out["domain"]["val"]
    general = out["general"]["train"] + out["general"]["val"]
    assert sorted(d["id"] for d in general) == sorted(rel for rel, _ in _package_files())  # topics file left out
    assert all(S.is_val_file(d["id"], 0, 0.3) for d in out["general"]["val"])
    capped = S.build_domain_split(files, val_fraction=0.3, max_general_val_bytes=3000)["general"]
    assert capped["train"] == out["general"]["train"]
    assert 0 < sum(len(d["text"]) for d in capped["val"]) <= 3000 and len(capped["val"]) < len(out["general"]["val"])
    assert set(out["general"]["train"][0]) == {"id", "text", "meta"}

    manifest = S.build_all(tmp_path, files=files)
    again = S.build_all(tmp_path / "again", files=files)
    for name in ("sequence_classification/train.jsonl", "sft/val.jsonl", "documents/domain/train.jsonl",
                 "documents/general/val.jsonl", "token_classification/train.jsonl"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert manifest["documents"]["domain"]["train"]["num_docs"] + \
        manifest["documents"]["domain"]["val"]["num_docs"] == 30
    assert manifest["tasks"]["sft"]["train"]["num_examples"] == \
        len((tmp_path / "sft" / "train.jsonl").read_text().splitlines())
    counts = {name: {split: v["num_examples"] for split, v in splits.items()} for name, splits in manifest["tasks"].items()}
    assert counts == {name: {split: v["num_examples"] for split, v in splits.items()}
                      for name, splits in again["tasks"].items()}
