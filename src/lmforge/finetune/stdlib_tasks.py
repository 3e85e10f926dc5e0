"""Fine-tuning tasks and a domain split built from this Python's own files (no download).

The measured fine-tuning effects (``experiments/finetune_effects.py``) need labelled tasks
and a second text domain that every machine already has. They come from the standard
library that ``lmforge quickstart`` pretrains on (the ``stdlib`` source kind), with labels
computed by the ``ast`` and ``tokenize`` modules, so they are exact and need no annotator:

- ``sequence_classification``: which of K packages (asyncio, distutils, email, xml) a
  snippet of a few consecutive source lines comes from; balanced per split.
- ``token_classification``: the role of every token of a logical source line (keyword,
  defined name, called name, attribute, other name, operator, number, string, comment).
- ``sft``: prompt = a short function's source + "Give its name and parameters as JSON.";
  response = ``{"name": ..., "params": [...]}`` as ``ast`` reads it. ``parse_signature``
  is the parser that checks a generated answer.
- ``domain``: a "general" corpus (library code: every stdlib ``.py`` file except
  ``pydoc_data``) and a held-out "domain" corpus (English: the reference-manual topics
  ``pydoc_data/topics.py`` holds for ``help()``), as prepared-document JSONL
  (``{id, text, meta}``, the format of ``lmforge prepare``) that ``lmforge tokenizer`` and
  ``lmforge encode`` turn into token shards with one tokenizer.

Every split is by source file: a file is on the val side when ``split_fraction(seed, path)``
(the hash ``lmforge prepare`` splits with) is below ``val_fraction``, the same choice for
every task and for the general corpus. So no val example shares a file with a training
example, and a model pretrained on the general train split has never read a val file.
Builders are pure functions of ``files`` (a list of ``(relative path, text)``) and a seed;
``build_all`` reads the stdlib once and writes everything under one directory.
"""

from __future__ import annotations

import ast
import io
import json
import keyword
import os
import random
import textwrap
import tokenize
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

from lmforge.data.prepare import split_fraction

SourceFile = tuple[str, str]  # (path relative to the stdlib root, its text)

CLASSIFICATION_PACKAGES = ("asyncio", "distutils", "email", "xml")
SFT_INSTRUCTION = "Give its name and parameters as JSON."
DOMAIN_FILE = "pydoc_data/topics.py"  # English reference text; left out of the general corpus
TOKEN_TAGS = ("KEYWORD", "DEF", "CALL", "ATTR", "NAME", "OP", "NUMBER", "STRING", "COMMENT")


def stdlib_files() -> list[SourceFile]:
    """This Python's stdlib ``.py`` files (the ``stdlib`` source: test suites left out) that
    are UTF-8 text, sorted by relative path."""
    from lmforge.config import SourceConfig
    from lmforge.data.sources import _stdlib_root, source_shards

    root = _stdlib_root()
    files = []
    for path in source_shards(SourceConfig(kind="stdlib")):
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if text.strip():
            files.append((os.path.relpath(path, root).replace(os.sep, "/"), text))
    return files


def is_val_file(rel_path: str, seed: int = 0, val_fraction: float = 0.2) -> bool:
    """Whether a file is on the val side of every split built here (hash of its path)."""
    return split_fraction(seed, rel_path) < val_fraction


def _split_of(rel_path: str, seed: int, val_fraction: float) -> str:
    return "val" if is_val_file(rel_path, seed, val_fraction) else "train"


def _take(items: list, count: int, rng: random.Random) -> list:
    """A seeded sample of ``count`` items (all of them, shuffled, when fewer)."""
    items = list(items)
    rng.shuffle(items)
    return items[:count]


# --------------------------------------------------------------------- sequence classification


def package_of(rel_path: str) -> str:
    """The top-level package of a stdlib path (``email/mime/text.py`` -> ``email``); '' for a module."""
    return rel_path.split("/", 1)[0] if "/" in rel_path else ""


def code_snippets(text: str, lines_per_snippet: int = 6, max_chars: int = 320,
                  min_chars: int = 80) -> Iterator[str]:
    """Consecutive non-overlapping groups of ``lines_per_snippet`` non-blank lines, common
    indentation removed, cut to ``max_chars``; groups shorter than ``min_chars`` are dropped."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    for start in range(0, len(lines) - lines_per_snippet + 1, lines_per_snippet):
        snippet = textwrap.dedent("\n".join(lines[start:start + lines_per_snippet]))[:max_chars]
        if len(snippet) >= min_chars:
            yield snippet


def build_sequence_classification(files: Sequence[SourceFile], packages: Sequence[str] = CLASSIFICATION_PACKAGES,
                                  max_train_per_class: int = 800, max_val_per_class: int = 150, seed: int = 0,
                                  val_fraction: float = 0.2) -> dict[str, list[dict[str, Any]]]:
    """``{"train": [...], "val": [...]}`` of ``{"text", "label", "source"}``: a code snippet
    and the package its file belongs to. Each split has the same number of examples per
    label (the smallest class's count, capped), drawn with ``seed``, in a seeded order."""
    by_split: dict[str, dict[str, list[dict[str, Any]]]] = {"train": {}, "val": {}}
    for rel, text in files:
        package = package_of(rel)
        if package not in packages:
            continue
        bucket = by_split[_split_of(rel, seed, val_fraction)].setdefault(package, [])
        bucket.extend({"text": snippet, "label": package, "source": rel} for snippet in code_snippets(text))
    out = {}
    for split, cap in (("train", max_train_per_class), ("val", max_val_per_class)):
        rng = random.Random(f"{seed}-sequence_classification-{split}")
        per_class = min([cap] + [len(by_split[split].get(p, [])) for p in packages])
        examples = [e for p in packages for e in _take(by_split[split].get(p, []), per_class, rng)]
        rng.shuffle(examples)
        out[split] = examples
    return out


# --------------------------------------------------------------------- token classification

_SKIPPED_TOKENS = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER,
                   tokenize.ENCODING}


def _tag(raw: Sequence[tokenize.TokenInfo], i: int) -> Optional[str]:
    tok = raw[i]
    if tok.type == tokenize.NAME:
        prev = raw[i - 1].string if i > 0 else ""
        if keyword.iskeyword(tok.string):
            return "KEYWORD"
        if prev in ("def", "class"):
            return "DEF"
        if i + 1 < len(raw) and raw[i + 1].string == "(":
            return "CALL"
        return "ATTR" if prev == "." else "NAME"
    return {tokenize.OP: "OP", tokenize.NUMBER: "NUMBER", tokenize.STRING: "STRING",
            tokenize.COMMENT: "COMMENT"}.get(tok.type)  # None: ERRORTOKEN, f-string parts (3.12)


def tagged_lines(text: str) -> Iterator[tuple[list[str], list[str]]]:
    """``(tokens, tags)`` of every logical line of ``text``, as ``tokenize`` reads the whole
    text (so a docstring is one STRING token, never words tagged as code); a line with a
    token ``_tag`` has no tag for is left out, and reading stops at the first token error.

    Tags (``TOKEN_TAGS``), by precedence for a name: a hard keyword is KEYWORD; the name after
    ``def``/``class`` DEF; a name followed by ``(`` CALL; a name after ``.`` ATTR; any other
    name NAME. Other tokens by type: OP, NUMBER, STRING, COMMENT. A comment on a line of its
    own is a line of one COMMENT token.
    """
    line: list[tokenize.TokenInfo] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
                if line:
                    tags = [_tag(line, i) for i in range(len(line))]
                    if None not in tags:
                        yield [t.string for t in line], tags  # type: ignore[misc]
                line = []
            elif tok.type not in _SKIPPED_TOKENS:
                line.append(tok)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return


def build_token_classification(files: Sequence[SourceFile], max_train: int = 4000, max_val: int = 500,
                               min_tokens: int = 4, max_tokens: int = 32, seed: int = 0,
                               val_fraction: float = 0.2) -> dict[str, list[dict[str, Any]]]:
    """``{"train": [...], "val": [...]}`` of ``{"tokens", "tags", "source"}``: one logical
    line's tokens (none holding whitespace, so any word joiner works) and their tags
    (``tagged_lines``).
    Distinct lines only (``x = 1`` once, not per file that has it), seeded sample."""
    pools: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {"train": {}, "val": {}}
    for rel, text in files:
        if rel == DOMAIN_FILE:
            continue
        pool = pools[_split_of(rel, seed, val_fraction)]
        for tokens, tags in tagged_lines(text):
            if not min_tokens <= len(tokens) <= max_tokens:
                continue
            if any(not t or any(c.isspace() for c in t) for t in tokens):
                continue
            pool.setdefault(tuple(tokens), {"tokens": tokens, "tags": tags, "source": rel})
    train_lines = set(pools["train"])
    out = {}
    for split, cap in (("train", max_train), ("val", max_val)):
        candidates = [e for key, e in pools[split].items() if split == "train" or key not in train_lines]
        out[split] = _take(candidates, cap, random.Random(f"{seed}-token_classification-{split}"))
    return out


# --------------------------------------------------------------------- SFT: signature as JSON


def function_params(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Parameter names in signature order; ``*args``/``**kwargs`` keep their stars."""
    args = node.args
    params = [a.arg for a in args.posonlyargs + args.args]
    if args.vararg is not None:
        params.append("*" + args.vararg.arg)
    params += [a.arg for a in args.kwonlyargs]
    if args.kwarg is not None:
        params.append("**" + args.kwarg.arg)
    return params


def signature_json(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The SFT response: ``{"name": "f", "params": ["a", "*b"]}`` (compact, keys in this order)."""
    return json.dumps({"name": node.name, "params": function_params(node)})


def sft_prompt(function_source: str) -> str:
    return f"{function_source}\n\n{SFT_INSTRUCTION}\n"


def functions_of(text: str, max_chars: int = 360) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """``(dedented source, node)`` of every function or method of ``text`` whose lines (the
    ``def`` line to the end, decorators left out; a ``def`` always starts its line) hold at
    most ``max_chars`` characters. (``ast.get_source_segment`` splits the whole text at each
    call: quadratic on the stdlib's large files, so the lines are split once here.)"""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return
    lines = text.splitlines(keepends=True)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
            segment = "".join(lines[node.lineno - 1:node.end_lineno]).rstrip()
            if len(segment) <= max_chars:
                yield textwrap.dedent(segment), node


def build_sft(files: Sequence[SourceFile], max_train: int = 3000, max_val: int = 200, max_chars: int = 360,
              seed: int = 0, val_fraction: float = 0.2) -> dict[str, list[dict[str, Any]]]:
    """``{"train": [...], "val": [...]}`` of ``{"prompt", "response", "source"}``: a short
    function's source with the instruction, and its name and parameters as JSON. Distinct
    functions only; val prompts come from val files and never repeat a train function."""
    pools: dict[str, dict[str, dict[str, Any]]] = {"train": {}, "val": {}}
    for rel, text in files:
        if rel == DOMAIN_FILE:
            continue
        pool = pools[_split_of(rel, seed, val_fraction)]
        for source, node in functions_of(text, max_chars):
            pool.setdefault(source, {"prompt": sft_prompt(source), "response": signature_json(node), "source": rel})
    out = {}
    for split, cap in (("train", max_train), ("val", max_val)):
        candidates = [e for key, e in pools[split].items() if split == "train" or key not in pools["train"]]
        out[split] = _take(candidates, cap, random.Random(f"{seed}-sft-{split}"))
    return out


def parse_signature(text: str) -> Optional[dict[str, Any]]:
    """The answer a model generated, if it is the asked form: the first line of ``text`` is a
    JSON object with exactly the keys ``name`` (a string) and ``params`` (a list of strings).
    None otherwise."""
    first = text.strip().split("\n", 1)[0] if text.strip() else ""
    try:
        value = json.loads(first)
    except (json.JSONDecodeError, ValueError):
        return None
    if not isinstance(value, dict) or set(value) != {"name", "params"}:
        return None
    if not isinstance(value["name"], str) or not isinstance(value["params"], list) or \
            not all(isinstance(p, str) for p in value["params"]):
        return None
    return value


def grade_signature(generated: str, expected_response: str) -> dict[str, bool]:
    """``valid``: ``generated`` parses as the asked form; ``name``: and names the function;
    ``exact``: and the parameters are right too."""
    answer = parse_signature(generated)
    expected = json.loads(expected_response)
    valid = answer is not None
    name = valid and answer["name"] == expected["name"]
    return {"valid": valid, "name": name, "exact": name and answer["params"] == expected["params"]}


# --------------------------------------------------------------------- domain split


def pydoc_topics(text: str) -> dict[str, str]:
    """The ``topics`` mapping of ``pydoc_data/topics.py`` (read with ``ast``, never executed)."""
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "topics" for t in node.targets):
            value = ast.literal_eval(node.value)
            if isinstance(value, dict):
                return {str(k): str(v) for k, v in value.items()}
    return {}


def build_domain_split(files: Sequence[SourceFile], seed: int = 0, val_fraction: float = 0.2,
                       max_general_val_bytes: int = 400_000) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``{"general": {"train", "val"}, "domain": {"train", "val"}}`` of prepared documents
    ``{"id", "text", "meta"}``. General: one document per stdlib file except ``DOMAIN_FILE``,
    split by file like every task here; general val is a seeded sample of the val files of at
    most ``max_general_val_bytes`` (0 = all; a training run measures its whole val split at
    the end), the other val files are left out (never in train). Domain: one document per
    pydoc topic (English reference text), split by the hash of the topic name."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {"general": {"train": [], "val": []},
                                                         "domain": {"train": [], "val": []}}
    for rel, text in files:
        if rel == DOMAIN_FILE:
            for name, topic in sorted(pydoc_topics(text).items()):
                if topic.strip():
                    split = _split_of(f"topic:{name}", seed, val_fraction)
                    out["domain"][split].append({"id": f"pydoc_topics/{name}", "text": topic,
                                                 "meta": {"source": "pydoc_topics"}})
            continue
        out["general"][_split_of(rel, seed, val_fraction)].append(
            {"id": rel, "text": text, "meta": {"source": "stdlib"}})
    if max_general_val_bytes:
        kept, size = [], 0
        for doc in _take(out["general"]["val"], len(out["general"]["val"]), random.Random(f"{seed}-general-val")):
            if size + len(doc["text"].encode()) <= max_general_val_bytes:
                kept.append(doc)
                size += len(doc["text"].encode())
        out["general"]["val"] = sorted(kept, key=lambda d: d["id"])
    return out


# --------------------------------------------------------------------- all of it


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def build_all(out_dir: str | Path, seed: int = 0, files: Optional[Sequence[SourceFile]] = None) -> dict[str, Any]:
    """Write every task and the domain split under ``out_dir``; returns (and writes as
    ``manifest.json``) the counts and paths.

    Layout: ``{sequence_classification,token_classification,sft}/{train,val}.jsonl`` and
    ``documents/{general,domain}/{train,val}.jsonl`` (prepared documents, ready for
    ``lmforge tokenizer`` / ``lmforge encode``).
    """
    out = Path(out_dir)
    files = stdlib_files() if files is None else files
    manifest: dict[str, Any] = {"seed": seed, "num_files": len(files), "tasks": {}, "documents": {}}
    tasks = {"sequence_classification": build_sequence_classification(files, seed=seed),
             "token_classification": build_token_classification(files, seed=seed),
             "sft": build_sft(files, seed=seed)}
    for name, splits in tasks.items():
        manifest["tasks"][name] = {}
        for split, examples in splits.items():
            path = out / name / f"{split}.jsonl"
            write_jsonl(path, examples)
            manifest["tasks"][name][split] = {"path": str(path), "num_examples": len(examples)}
    for corpus, splits in build_domain_split(files, seed=seed).items():
        manifest["documents"][corpus] = {"dir": str(out / "documents" / corpus)}
        for split, docs in splits.items():
            write_jsonl(out / "documents" / corpus / f"{split}.jsonl", docs)
            manifest["documents"][corpus][split] = {"num_docs": len(docs),
                                                     "num_bytes": sum(len(d["text"].encode()) for d in docs)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
