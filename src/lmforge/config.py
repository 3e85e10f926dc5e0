"""Typed configs: one dataclass per verb, YAML recipes and dotted CLI overrides.

A YAML recipe in ``configs/`` maps one-to-one onto these fields and any field can be
overridden from the command line by its dotted name (``--optim.lr 3e-4``). A string field
takes the command-line text exactly as typed; other fields read it with YAML rules. The loader in
this file validates every key and value against the type hints, so a typo or a bad value
fails at load time with one line naming the key and what was expected. Each field's
``help`` metadata is what ``lmforge VERB --help`` prints: the dataclass is the single
source for the YAML schema, the CLI and the docs (litgpt's habit).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

import yaml

from lmforge.errors import ConfigError


def _f(default: Any, help: str, check: Optional["Check"] = None, **kw: Any) -> Any:
    """A dataclass field with a help string and, optionally, a range check (``check``) that
    ``_build`` applies after type coercion (mutable defaults are copied per instance)."""
    metadata = {"help": help, "check": check}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=metadata, **kw)
    return field(default=default, metadata=metadata, **kw)


option = _f  # public name for step option dataclasses outside this file


# --------------------------------------------------------------------------- range checks
#
# Each field that needs more than its type declares a ``Check`` in its ``_f(...)``. A check's
# test is a small pure function of the coerced value: True (allowed), False (refused) or a
# string (refused, with that reason). The error and ``--help`` say what is allowed, worded for
# the field's type. A float field without a check of its own still gets ``finite``: no NaN or
# infinity reaches any code. Checks that need two fields are a ``validate(self, prefix)``
# method of the dataclass, which ``_build`` calls once the fields are checked.


@dataclass(frozen=True)
class Check:
    """A named range check: ``test(value)`` gives True, False or a reason for refusing;
    ``allowed`` maps a field type (int, float, str) to what the messages say is allowed."""

    name: str
    test: Callable[[Any], Union[bool, str]]
    allowed: dict[type, str]

    def describe(self, tp: Any) -> str:
        """What is allowed, for a field of type ``tp`` (Optional and list unwrapped)."""
        base = _base_type(tp)
        return self.allowed.get(base) or next(iter(self.allowed.values()))

    def problem(self, value: Any, tp: Any) -> Optional[str]:
        """None if ``value`` passes, else ``expected ..., got ...`` (with the reason, if any)."""
        verdict = self.test(value)
        if verdict is True:
            return None
        reason = f" ({verdict})" if isinstance(verdict, str) and verdict else ""
        return f"expected {self.describe(tp)}, got {_shown(value)}{reason}"


def _shown(value: Any) -> str:
    """A value as errors show it: repr, but ``nan``/``inf`` for floats (as the user typed them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    shown = repr(value)
    return shown if len(shown) <= 100 else f"{shown[:60]}... ({len(shown)} characters)"


def _base_type(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else tp
    if origin in (list, typing.List):
        return _base_type(typing.get_args(tp)[0])
    return tp


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def at_least(low: int) -> Check:
    """An integer >= ``low`` (a number >= ``low`` for a float field)."""
    return Check(f"at_least({low})", lambda v: _number(v) and v >= low,
                 {int: f"an integer >= {low}", float: f"a finite number >= {low}"})


def between(low: int, high: int) -> Check:
    """An integer from ``low`` to ``high`` (both included)."""
    return Check(f"between({low}, {high})", lambda v: _number(v) and low <= v <= high,
                 {int: f"an integer from {low:,} to {high:,}"})


def zero_or_at_least(low: int) -> Check:
    """0 (off) or an integer >= ``low``."""
    return Check(f"zero_or_at_least({low})", lambda v: _number(v) and (v == 0 or v >= low),
                 {int: f"0 (off) or an integer >= {low}"})


def interval(low: float, high: float, closed: str) -> Check:
    """A finite number between ``low`` and ``high``; ``closed`` is the bracket pair, e.g. ``[)``."""
    left, right = closed

    def test(v: Any) -> bool:
        return (_number(v) and (v >= low if left == "[" else v > low)
                and (v <= high if right == "]" else v < high))
    text = f"a number in {left}{low:g}, {high:g}{right}"
    return Check(f"interval{left}{low:g},{high:g}{right}", test, {float: text, int: text})


finite = Check("finite", _number, {float: "a finite number", int: "an integer"})
positive = Check("positive", lambda v: _number(v) and v > 0,
                 {int: "an integer >= 1", float: "a positive finite number"})
non_negative = Check("non_negative", lambda v: _number(v) and v >= 0,
                     {int: "an integer >= 0", float: "a finite number >= 0"})
unit_interval = interval(0.0, 1.0, "[]")  # fractions that may be all or nothing
below_one = interval(0.0, 1.0, "[)")  # held-out fractions, dropout, Adam betas, momentum
open_unit = interval(0.0, 1.0, "()")  # a factor that must shrink and not vanish
probability_mass = interval(0.0, 1.0, "(]")  # top_p
# Seeds: numpy's default_rng and torch.manual_seed both take any integer in [0, 2**63).
random_seed = between(0, 2**63 - 1)
# A tokenizer's vocabulary: the HF trainers reserve room for vocab_size entries up front (2**24
# takes 60 MB; 10**12 aborts the process in Rust's allocator), so the size is bounded; 16.7M
# is far above any real vocabulary (Llama 3: 128k).
vocab_size_range = between(1, 2**24)


def _header_value(value: Any) -> Union[bool, str]:
    if any(c in value for c in "\r\n\x00"):
        return "a line break or NUL in it"
    return all(ord(c) < 256 for c in value) or "HTTP headers are Latin-1"


# An HTTP header value as http.client sends it: one line, Latin-1.
header_value = Check("header_value", _header_value, {str: "one line of Latin-1 text"})


def _existing_parent(path: Path) -> Path:
    """The nearest ancestor of ``path`` (itself included) that exists (lstat: a dangling link counts)."""
    for candidate in (path, *path.parents):
        try:
            candidate.lstat()
            return candidate
        except (FileNotFoundError, NotADirectoryError):
            continue
    return Path(".")


def _kind_of(path: Path) -> str:
    """'a directory', 'a file', 'a FIFO', ... for an existing path (links followed)."""
    import stat

    mode = path.stat().st_mode
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a file"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a file or directory"


def _output_path(value: str, want_dir: bool) -> Union[bool, str]:
    """Whether a directory (``want_dir``) or a file can be written at ``value``: it is one already,
    or it is missing and its nearest existing ancestor is a directory we may write in."""
    if value == "":
        return True  # the verb's own default (or its own "required" error)
    if "\x00" in value:
        return "it has a NUL byte"
    path = Path(value)
    try:
        existing = _existing_parent(path)
        if not existing.exists():  # lstat found it, stat does not: a link to nothing
            return f"'{existing}' is a dangling symbolic link"
        if existing == path:
            kind = _kind_of(path)
            wanted = "a directory" if want_dir else "a file"
            return kind == wanted or f"it is {kind}"
        if not existing.is_dir():
            return f"'{existing}' in its path is {_kind_of(existing)}"
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"'{existing}' in its path is not writable"
    except OSError as err:  # a name too long, a loop of links, ...
        return err.strerror or str(err)
    return True


writable_dir = Check("writable_dir", lambda v: _output_path(v, want_dir=True),
                {str: "a directory, or a path where one can be created"})
writable_file = Check("writable_file", lambda v: _output_path(v, want_dir=False),
                 {str: "a file, or a path where one can be created"})
path_text = Check("path_text", lambda v: "\x00" not in v or "it has a NUL byte", {str: "a path"})


def available_devices() -> list[str]:
    """The device names this machine can run on: auto, cpu, and cuda/cuda:N/mps when present.
    Imports torch only when asked about a device other than auto or cpu."""
    import torch

    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def _device(value: str) -> Union[bool, str]:
    if value in ("auto", "cpu"):
        return True
    if not re.fullmatch(r"cuda(:[0-9]+)?|mps", value):
        return "not a device name; this machine has " + ", ".join(available_devices())
    available = available_devices()
    return value in available or "this machine has only " + ", ".join(available)


device_name = Check("device_name", _device, {str: "auto, cpu, cuda, cuda:N or mps"})


def physical_memory() -> Optional[int]:
    """This machine's physical memory in bytes, or None where the OS does not say."""
    try:
        size = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return size if size > 0 else None


def check_fits_in_memory(key: str, what: str, num_bytes: int, hint: str) -> None:
    """ConfigError naming ``key`` when ``num_bytes`` (for ``what``) exceed this machine's
    physical memory; no check where the OS does not report it."""
    memory = physical_memory()
    if memory is not None and num_bytes > memory:
        raise ConfigError(f"config key '{key}': {what} need about {_human_bytes(num_bytes)}, more than this "
                          f"machine's {_human_bytes(memory)} of memory: {hint}")


def check_model_fits(model: Any, key: str, bytes_per_parameter: int, what: str) -> None:
    """ConfigError naming ``key`` when ``bytes_per_parameter`` for each of ``model``'s parameters
    (estimated by formula, without building it: ``Family.estimate_parameters``, the same count as
    ``models.sizing.approx_parameters``), plus its fp32 RoPE tables, exceed the memory.
    The model is reached through the family registry only, which imports nothing from here;
    its shape is not checked (the code that builds the model says what is wrong with it)."""
    from lmforge.models.registry import get_family

    try:
        family = get_family(model.family)
    except ConfigError:
        return
    model = family.with_derived_fields(dataclasses.replace(model, vocab_size=max(model.vocab_size, 1)))
    num_parameters = family.estimate_parameters(model)
    weights, tables = bytes_per_parameter * num_parameters, 4 * family.rope_table_elements(model)
    with_tables = f" and RoPE tables for {model.max_seq_len:,} positions" if tables > weights / 10 else ""
    check_fits_in_memory(key, f"the {what} of this {model.family} model ({num_parameters:.3g} parameters)"
                         f"{with_tables}", weights + tables,
                         f"make it smaller ({key}.dim, {key}.num_layers, {key}.vocab_size, ...)")


def _human_bytes(num_bytes: float) -> str:
    for scale, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB")):
        if num_bytes >= scale:
            amount = num_bytes / scale
            return f"{amount:,.1f} {unit}" if amount < 1e6 else f"{amount:.3g} {unit}"
    return f"{num_bytes:,} bytes"


# --------------------------------------------------------------------------- data


@dataclass
class CrawlConfig:
    """A polite web crawl (source kind ``crawl``): robots.txt, per-host rate limit, retries."""

    start_urls: list[str] = _f([], "URLs the crawl starts from")
    max_pages: int = _f(100, "stop after fetching this many pages", check=positive)
    max_depth: int = _f(2, "follow links at most this many hops from a start URL", check=non_negative)
    same_domain: bool = _f(True, "only follow links to the start URLs' hosts")
    delay_seconds: float = _f(1.0, "minimum seconds between two requests to the same host", check=non_negative)
    retries: int = _f(3, "retries of a failed request (connection error, 429, 5xx)", check=non_negative)
    backoff_seconds: float = _f(1.0, "first retry waits this long, doubling each retry", check=non_negative)
    timeout_seconds: float = _f(10.0, "per-request timeout", check=positive)
    user_agent: str = _f("lmforge-crawler/0.1 (+https://github.com/lmforge/lmforge)",
                         "User-Agent header; robots.txt rules for it are obeyed", check=header_value)
    max_bytes: int = _f(5_000_000, "skip (count) a response larger than this", check=positive)


@dataclass
class SourceConfig:
    """Where raw documents come from."""

    kind: Literal["stdlib", "text", "jsonl", "parquet", "csv", "html", "warc", "wikipedia", "pdf",
                  "epub", "crawl"] = _f(
        "stdlib", "stdlib: this Python's own standard-library .py files (no download); "
        "text: text/Markdown files, directories or globs; jsonl: JSON lines (.gz, .zst too); "
        "parquet: Parquet files; csv: CSV files (one row per document); html: HTML files (main text "
        "extracted); warc: WARC archives (.warc, .warc.gz); wikipedia: a MediaWiki XML dump (.xml, "
        ".bz2, .gz), wikitext reduced to plain text; pdf: the text layer of PDF files; epub: EPUB books; "
        "crawl: a polite web crawl (see crawl.*)")
    paths: list[str] = _f([], "files, directories or glob patterns (not used by stdlib or crawl)", check=path_text)
    text_field: str = _f("text", "JSONL/Parquet field or CSV column that holds the document text")
    on_error: Literal["raise", "skip"] = _f(
        "raise", "raise: stop at the first bad document; skip: count and record it, go on")
    max_documents: int = _f(0, "stop after this many documents (0 = all)", check=non_negative)
    crawl: CrawlConfig = field(default_factory=CrawlConfig)


@dataclass
class PrepareConfig:
    """`lmforge prepare`: read a source, split it into train/val documents (JSONL)."""

    source: SourceConfig = field(default_factory=SourceConfig)
    out_dir: str = _f("runs/quickstart/documents", "where train.jsonl, val.jsonl and stats.json go", check=writable_dir)
    val_fraction: float = _f(0.05, "fraction of files (documents) held out for validation", check=below_one)
    split_seed: int = _f(0, "seed of the deterministic train/val split (by file)", check=random_seed)


@dataclass
class DataOutputConfig:
    """Where `lmforge data run` writes kept documents (ready for `lmforge prepare`)."""

    dir: str = _f("runs/data", "output directory: shards, stats.json, rejects and markers go here", check=writable_dir)
    format: Literal["jsonl", "parquet"] = _f("jsonl", "format of the output shards")
    val_fraction: float = _f(0.01, "fraction of kept documents written to the val split (by content hash)",
                             check=below_one)
    split_seed: int = _f(0, "seed of the deterministic train/val split", check=random_seed)
    write_rejects: bool = _f(True, "write dropped documents with their step and reason to rejects/")


@dataclass
class DataRunConfig:
    """`lmforge data run PIPELINE.yaml`: read a source, run the steps in order, write shards."""

    input: SourceConfig = field(default_factory=lambda: SourceConfig(kind="text", on_error="skip"))
    steps: list[dict] = _f([], "ordered steps, each a mapping {step: NAME, ...its options}; "
                               "`lmforge data steps` lists them")
    output: DataOutputConfig = field(default_factory=DataOutputConfig)
    executor: Literal["local", "ray"] = _f("local", "local: a process pool on this machine; "
                                                    "ray: tasks on a Ray cluster (pip install lmforge[ray])")
    workers: int = _f(0, "parallel shard workers (0 = one per CPU core)", check=between(0, 1024))
    ray_address: str = _f("", "Ray cluster address ('' starts a local Ray instance)")


@dataclass
class DataReportConfig:
    """`lmforge data report DIR`: what each step removed, and a plot of the distributions."""

    dir: str = _f("runs/data", "the output directory of `lmforge data run`", check=path_text)
    plot: str = _f("", "PNG to write (default: DIR/report.png)", check=writable_file)


@dataclass
class ClassifierTrainConfig:
    """`lmforge data train-classifier`: a hashed n-gram logistic regression on labelled JSONL."""

    data: str = _f("", "JSONL file of labelled examples", check=path_text)
    text_field: str = _f("text", "field holding the text")
    label_field: str = _f("label", "field holding the label: 1/true = flag (drop), 0/false = keep")
    out: str = _f("runs/classifier/model.npz", "where the trained classifier is written", check=writable_file)
    val_fraction: float = _f(0.2, "held-out fraction for the precision/recall report", check=open_unit)
    num_buckets: int = _f(1 << 20, "hashed feature space size", check=positive)
    word_ngrams: int = _f(2, "word n-grams 1..N are features", check=positive)
    char_ngrams: int = _f(0, "character n-grams 3..N are features (0 = off)", check=zero_or_at_least(3))
    epochs: int = _f(10, "passes over the training split", check=positive)
    lr: float = _f(0.5, "learning rate of the SGD/Adagrad updates", check=positive)
    l2: float = _f(1e-6, "L2 weight decay", check=non_negative)
    threshold: float = _f(0.5, "probability at or above which a text is flagged", check=unit_interval)
    seed: int = _f(0, "seed of the split and the shuffling", check=random_seed)

    def validate(self, prefix: str = "") -> None:
        """The weights and the Adagrad sums (two float64 per bucket) must fit in memory."""
        check_fits_in_memory(prefix + "num_buckets", f"{self.num_buckets:,} buckets (two float64 each)",
                             16 * self.num_buckets, "lower num_buckets")


@dataclass
class TokenizerConfig:
    """`lmforge tokenizer`: train a tokenizer on prepared documents and save it."""

    kind: Literal["byte_bpe", "wordpiece", "word", "sp_unigram", "sp_bpe", "char"] = _f(
        "byte_bpe", "algorithm: byte-level BPE, WordPiece, word-level (HF tokenizers), "
        "SentencePiece Unigram/BPE, or character-level")
    input: str = _f("runs/quickstart/documents/train.jsonl", "JSONL documents to train on", check=path_text)
    out_dir: str = _f("runs/quickstart/tokenizer", "directory the tokenizer is saved to", check=writable_dir)
    vocab_size: int = _f(4096, "vocabulary size including special tokens", check=vocab_size_range)
    min_frequency: int = _f(2, "minimum pair/word frequency (BPE, WordPiece, word)", check=non_negative)
    max_train_bytes: int = _f(200_000_000, "sample at most this many bytes of text to train on", check=positive)
    lowercase: bool = _f(False, "lowercase text before tokenizing (WordPiece/word)")


@dataclass
class EncodeConfig:
    """`lmforge encode`: tokenize prepared documents into token shards (.bin + .idx)."""

    documents_dir: str = _f("runs/quickstart/documents", "directory with train.jsonl and val.jsonl", check=path_text)
    tokenizer_dir: str = _f("runs/quickstart/tokenizer", "tokenizer to encode with", check=path_text)
    out_dir: str = _f("runs/quickstart/shards", "where train.bin/.idx, val.bin/.idx and meta.json go",
                      check=writable_dir)
    num_workers: int = _f(2, "tokenizer processes (no more than one per CPU core are started)", check=positive)
    append_eos: bool = _f(True, "end every document with the eos token")


# --------------------------------------------------------------------------- model


def _is_registered_family(name: Any) -> Union[bool, str]:
    from lmforge.models.registry import families

    known = families()
    return name in known or f"registered: {', '.join(known)}"


# Family names come from the registry (lmforge.models.families), so a new family needs no edit here.
registered_family = Check("registered_family", _is_registered_family, {str: "a registered model family"})


@dataclass
class ModelConfig:
    """A transformer (decoder-only, or the BERT encoder). `preset` fills the fields; explicit fields override it."""

    preset: str = _f("", "named preset (see `lmforge models`); empty = use the fields below")
    family: str = _f("llama", "model family: each registers itself in lmforge.models.families (`lmforge models` "
                     "lists them with their presets)", check=registered_family)
    vocab_size: int = _f(0, "0 = take it from the tokenizer", check=non_negative)
    max_seq_len: int = _f(256, "longest context the model supports", check=positive)
    dim: int = _f(256, "residual stream width", check=positive)
    num_layers: int = _f(4, "transformer blocks", check=positive)
    num_heads: int = _f(4, "query heads", check=positive)
    num_kv_heads: int = _f(0, "key/value heads (0 = num_heads, i.e. multi-head attention)", check=non_negative)
    hidden_dim: int = _f(0, "MLP width (0 = 4*dim for GELU, 8/3*dim rounded to multiple_of for SwiGLU)",
                         check=non_negative)
    multiple_of: int = _f(64, "round the SwiGLU hidden width up to a multiple of this", check=positive)
    norm_eps: float = _f(1e-5, "epsilon of LayerNorm/RMSNorm", check=positive)
    rope_theta: float = _f(10000.0, "RoPE base frequency", check=positive)
    sliding_window: int = _f(0, "each query attends to itself and the sliding_window-1 keys before it "
                             "(Mistral); 0 = full causal attention", check=non_negative)
    tie_embeddings: bool = _f(True, "share the input embedding and output projection")
    bias: bool = _f(False, "biases in linear layers and LayerNorm (GPT-2 uses them)")
    dropout: float = _f(0.0, "dropout on attention and residual branches", check=below_one)
    init_std: float = _f(0.02, "std of the normal init; residual projections scaled by 1/sqrt(2*num_layers)",
                         check=positive)
    type_vocab_size: int = _f(0, "bert: token-type (segment) embeddings, 2 in BERT (0 = none)", check=non_negative)
    num_labels: int = _f(0, "bert: classes of the sequence/token classification head (0 = no such head)",
                         check=non_negative)
    num_decoder_layers: int = _f(0, "t5: decoder blocks (0 = num_layers)", check=non_negative)
    head_dim: int = _f(0, "t5: width of each attention head (0 = dim / num_heads; T5 v1.1 sizes differ)",
                       check=non_negative)
    relative_attention_num_buckets: int = _f(32, "t5: relative position buckets of the attention bias",
                                             check=at_least(4))
    relative_attention_max_distance: int = _f(128, "t5: distances from this on share the last bucket", check=positive)
    feed_forward: Literal["relu", "gated-gelu"] = _f(
        "relu", "t5: MLP kind, relu (T5 v1.0) or gated-gelu (T5 v1.1, GEGLU with the tanh GELU)")

    def validate(self, prefix: str = "") -> None:
        """The fp32 weights must fit in this machine's memory."""
        check_model_fits(self, prefix.rstrip(".") or "model", 4, "fp32 weights")


# --------------------------------------------------------------------------- training


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    name: Literal["sgd", "adam", "adamw", "lamb"] = _f("adamw", "optimiser")
    lr: float = _f(1e-3, "peak learning rate", check=positive)
    weight_decay: float = _f(0.1, "decoupled weight decay (not applied to norms, biases, embeddings)",
                             check=non_negative)
    beta1: float = _f(0.9, "Adam/LAMB beta1", check=below_one)
    beta2: float = _f(0.95, "Adam/LAMB beta2", check=below_one)
    eps: float = _f(1e-8, "Adam/LAMB epsilon", check=positive)
    momentum: float = _f(0.9, "SGD momentum", check=below_one)
    schedule: Literal["constant", "linear", "cosine", "wsd"] = _f(
        "cosine", "learning-rate schedule after warmup (wsd = warmup-stable-decay)")
    warmup_steps: int = _f(100, "linear warmup steps from 0 to lr", check=non_negative)
    min_lr_ratio: float = _f(0.1, "final learning rate as a fraction of lr (linear, cosine, wsd)",
                             check=unit_interval)
    decay_fraction: float = _f(0.2, "wsd: fraction of steps spent in the final decay", check=unit_interval)
    grad_clip: float = _f(1.0, "clip the global gradient norm to this (0 = off)", check=non_negative)
    layer_lr_decay: float = _f(1.0, "layer-wise learning-rate decay (ELECTRA/BEiT fine-tuning): the top block trains "
                                    "at lr*decay, each block below at one more factor of decay, the embeddings "
                                    "deepest; the output end at lr (1 = off)", check=probability_mass)
    module_lr_scales: dict = _f({}, "learning-rate multipliers by parameter-name pattern (fnmatch), e.g. "
                                    "{'output.*': 10.0}; the first matching pattern applies, after layer_lr_decay")
    freeze: list = _f([], "parameter-name patterns (fnmatch) left untrained, e.g. ['tok_embeddings.*', "
                          "'layers.[0-5].*']; a pattern that matches no parameter is an error")

    def validate(self, prefix: str = "") -> None:
        """``module_lr_scales`` maps name patterns to positive finite multipliers."""
        key = f"{prefix}module_lr_scales"
        if not isinstance(self.module_lr_scales, dict):
            raise ConfigError(f"config key '{key}': expected a mapping of parameter-name patterns to "
                              f"multipliers, got {_shown(self.module_lr_scales)}")
        for pattern, scale in self.module_lr_scales.items():
            _check_field(scale, float, positive, f"{key}.{pattern}")
        if not isinstance(self.freeze, list) or not all(isinstance(p, str) and p for p in self.freeze):
            raise ConfigError(f"config key '{prefix}freeze': expected a list of parameter-name patterns, "
                              f"got {_shown(self.freeze)}")


@dataclass
class TrainConfig:
    """The training loop: batch, budget, precision, evaluation and checkpoints."""

    shards_dir: str = _f("runs/quickstart/shards", "token shards from `lmforge encode`", check=path_text)
    tokenizer_dir: str = _f("runs/quickstart/tokenizer", "tokenizer saved into every checkpoint; empty = the "
                                                         "tokenizer of train.init_from", check=path_text)
    run_dir: str = _f("runs/quickstart", "where checkpoints, metrics.jsonl and config.yaml go", check=writable_dir)
    seq_len: int = _f(256, "tokens per training sequence", check=positive)
    batch_size: int = _f(16, "sequences per micro-batch (per process)", check=positive)
    grad_accum: int = _f(1, "micro-batches per optimiser step", check=positive)
    max_steps: int = _f(1000, "stop after this many optimiser steps (0 = no limit)", check=non_negative)
    max_tokens: int = _f(0, "stop after this many training tokens (0 = no limit)", check=non_negative)
    max_seconds: float = _f(0.0, "stop after this much wall-clock training time (0 = no limit)", check=non_negative)
    eval_interval: int = _f(200, "evaluate on the val split every N steps (0 = only at the end)", check=non_negative)
    eval_batches: int = _f(20, "micro-batches per periodic evaluation", check=positive)
    log_interval: int = _f(10, "log every N steps", check=positive)
    checkpoint_interval: int = _f(0, "save a checkpoint every N steps (0 = only at the end)", check=non_negative)
    keep_last: int = _f(2, "keep this many most recent checkpoints (0 = keep them all)", check=non_negative)
    resume: bool = _f(True, "resume from the newest checkpoint in run_dir if there is one")
    init_from: str = _f("", "start from these weights: an lmforge checkpoint (or run directory) or an HF model "
                            "directory; weights only (fresh optimiser, step 0), model config from the source; "
                            "a checkpoint in run_dir to resume from takes precedence", check=path_text)
    precision: Literal["fp32", "bf16", "fp16"] = _f("fp32", "autocast dtype (fp16 adds a grad scaler)")
    device: str = _f("auto", "auto, cpu, cuda, cuda:1, ...", check=device_name)
    compile: bool = _f(False, "torch.compile the model")
    keep_freed_memory: bool = _f(True, "on CPU: keep freed memory for the next step instead of returning it "
                                       "to the OS (glibc mallopt; 1.18x on a 135M model)")
    seed: int = _f(1337, "seed for init and data order", check=random_seed)
    on_nonfinite: Literal["stop", "skip", "rollback"] = _f(
        "stop", "what a non-finite loss or gradient norm does: stop (one error line; the last "
        "checkpoint stays the newest), skip (drop that step's update, counted as skipped_steps in "
        "metrics.jsonl) or rollback (reload the last checkpoint and go on at a lower learning rate)")
    rollback_lr_factor: float = _f(0.5, "rollback: multiply the learning rate by this at each rollback",
                                   check=open_unit)
    max_rollbacks: int = _f(3, "rollback: stop after this many rollbacks in one run", check=non_negative)


@dataclass
class TaskConfig:
    """What a run optimises: a registered task and its options (`lmforge tasks` lists both)."""

    name: str = _f("", "the task (`lmforge tasks` lists them); empty = the model family's pretraining task "
                       "(causal_lm for decoders, masked_lm for bert, span_corruption for t5)")
    options: dict = _f({}, "the task's options as a mapping, e.g. {mask_prob: 0.2}; checked against the task's "
                           "own (`lmforge tasks`)")

    def validate(self, prefix: str = "") -> None:
        if not isinstance(self.options, dict):
            raise ConfigError(f"config key '{prefix}options': expected a mapping of the task's options, "
                              f"got {_shown(self.options)}")


@dataclass
class PretrainConfig:
    """`lmforge pretrain`: train a model on its task (by default the family's: causal LM, masked LM or
    span corruption) over token shards."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self, prefix: str = "") -> None:
        """Training holds fp32 weights, their gradients and the optimiser's state per parameter:
        16 bytes with Adam, AdamW or LAMB (two moments), 12 with SGD momentum, 8 without. All
        of it must fit in this machine's memory."""
        if self.optim.name == "sgd":
            per_parameter, what = (12, "fp32 weights, gradients and SGD momentum") if self.optim.momentum else (
                8, "fp32 weights and gradients")
        else:
            per_parameter, what = 16, f"fp32 weights, gradients and two {self.optim.name} moments"
        check_model_fits(self.model, prefix + "model", per_parameter, what)
        # A micro-batch keeps at least its token ids (inputs and targets, int64) and each layer's
        # fp32 input for the backward pass: a lower bound, enough to refuse an absurd batch.
        tokens = self.train.batch_size * self.train.seq_len
        layers = self.model.num_layers + self.model.num_decoder_layers
        check_fits_in_memory(f"{prefix}train.batch_size", f"the activations of a micro-batch of {tokens:,} tokens "
                             f"(at least)", tokens * (16 + 4 * self.model.dim * layers),
                             f"lower {prefix}train.batch_size or {prefix}train.seq_len")
        # The sampler draws each optimiser step's window offsets at once (int64 per sequence).
        sequences = self.train.batch_size * self.train.grad_accum
        check_fits_in_memory(f"{prefix}train.grad_accum", f"the window offsets of an optimiser step of "
                             f"{sequences:,} sequences", 8 * sequences,
                             f"lower {prefix}train.grad_accum or {prefix}train.batch_size")


@dataclass
class AdapterConfig:
    """A parameter-efficient adapter trained instead of the whole model (`lmforge adapters` lists them)."""

    name: str = _f("", "the adapter kind, e.g. lora; empty = full fine-tuning (every parameter not frozen trains)")
    options: dict = _f({}, "the adapter's options, e.g. {rank: 8, alpha: 16, targets: [q_proj, v_proj]}; checked "
                           "against the adapter's own (`lmforge adapters`)")
    save_merged: bool = _f(False, "also write RUN_DIR/merged: a full checkpoint with the adapter merged into the "
                                  "weights (checkpoints otherwise hold only the adapter)")

    def validate(self, prefix: str = "") -> None:
        if not isinstance(self.options, dict):
            raise ConfigError(f"config key '{prefix}options': expected a mapping of the adapter's options, "
                              f"got {_shown(self.options)}")


@dataclass
class FinetuneConfig(PretrainConfig):
    """`lmforge finetune`: adapt a pretrained model (`train.init_from`: an lmforge checkpoint or an HF
    directory) to a task: continued pretraining (causal_lm on new shards), sft, sequence or token
    classification, seq2seq; fully, with frozen parts (`optim.freeze`) or through an adapter."""

    # The tokenizer and model config come from train.init_from unless given.
    train: TrainConfig = field(default_factory=lambda: TrainConfig(tokenizer_dir="", run_dir="runs/finetune"))
    adapter: AdapterConfig = field(default_factory=AdapterConfig)

    def validate(self, prefix: str = "") -> None:
        if not self.train.init_from:
            raise ConfigError(f"config key '{prefix}train.init_from': fine-tuning starts from a pretrained model: "
                              "pass an lmforge checkpoint or run directory, or an HF model directory")
        super().validate(prefix)


@dataclass
class EvaluateConfig:
    """`lmforge evaluate CKPT`: loss, perplexity and bits per byte."""

    checkpoint: str = _f("", "checkpoint directory (or a run directory: its newest checkpoint)", check=path_text)
    data: str = _f("", "token shards directory (uses its val split) or a text/JSONL file", check=path_text)
    split: str = _f("val", "which split of a shards directory")
    seq_len: int = _f(0, "window length (0 = the model's max_seq_len)", check=non_negative)
    batch_size: int = _f(8, "windows per batch", check=positive)
    max_tokens: int = _f(0, "evaluate at most this many tokens (0 = all)", check=non_negative)
    device: str = _f("auto", "auto, cpu, cuda, ...", check=device_name)


@dataclass
class GenerateConfig:
    """`lmforge generate CKPT --prompt ...`: sample text with a KV cache."""

    checkpoint: str = _f("", "checkpoint directory (or a run directory: its newest checkpoint)", check=path_text)
    prompt: str = _f("", "text to continue")
    max_new_tokens: int = _f(128, "tokens to generate (0: print the prompt only)", check=non_negative)
    temperature: float = _f(0.8, "softmax temperature (0 = greedy)", check=non_negative)
    top_k: int = _f(0, "keep the k most likely tokens (0 = off)", check=non_negative)
    top_p: float = _f(1.0, "nucleus sampling: keep the smallest set with this much probability",
                      check=probability_mass)
    repetition_penalty: float = _f(1.0, "divide positive logits of seen tokens by this (CTRL)", check=positive)
    stop: list[str] = _f([], "stop when any of these strings appears in the output")
    num_samples: int = _f(1, "independent samples", check=positive)
    seed: int = _f(0, "sampling seed", check=random_seed)
    device: str = _f("auto", "auto, cpu, cuda, ...", check=device_name)


@dataclass
class ConvertConfig:
    """`lmforge convert SOURCE --to hf|lmforge --out_dir DIR`: HF-format export and import.

    Families: GPT-2, LLaMA, Mistral, Falcon, BERT (masked LM, sequence and token classification
    heads) and T5 (v1.0 and v1.1; the 100 span-corruption sentinels are written to tokenizer.json
    as <extra_id_N>)."""

    to: Literal["hf", "lmforge", "peft"] = _f(
        "hf", "hf: export an lmforge checkpoint (or a run directory's newest) to an HF-format directory; "
              "lmforge: import an HF-format directory (config.json + safetensors) as an lmforge checkpoint; "
              "peft: export a LoRA checkpoint of `lmforge finetune` as a PEFT adapter (adapter_config.json + "
              "adapter_model.safetensors) for the HF export of its base")
    source: str = _f("", "the checkpoint (to hf) or HF model directory (to lmforge) to convert", check=path_text)
    out_dir: str = _f("", "directory to write; must not exist or be empty unless overwrite is set", check=writable_dir)
    overwrite: bool = _f(False, "replace a non-empty out_dir")
    tokenizer_dir: str = _f("", "to lmforge only: an lmforge tokenizer to store with the model, needed when the "
                                "HF directory has no tokenizer.json with lmforge's five special tokens "
                                "(e.g. a T5 checkpoint with a SentencePiece tokenizer)", check=path_text)


@dataclass
class QuickstartConfig:
    """`lmforge quickstart`: prepare -> tokenizer -> encode -> pretrain -> evaluate -> generate."""

    run_dir: str = _f("runs/quickstart", "everything goes under this directory", check=writable_dir)
    recipe: str = _f("", "pretrain recipe YAML (default: the packaged quickstart recipe)", check=path_text)
    max_documents: int = _f(0, "use at most this many stdlib files (0 = all)", check=non_negative)
    vocab_size: int = _f(4096, "tokenizer vocabulary size", check=vocab_size_range)
    prompts: list[str] = _f(["import os\n", "def parse_args(", "class Stack:\n    def __init__(self"],
                            "prompts to sample from at the end (no trailing space: BPE tokens carry it)")
    max_new_tokens: int = _f(96, "tokens per sample (0: the prompts only)", check=non_negative)


# --------------------------------------------------------------------------- loading


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, typing.List):
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if tp is dict or origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type hint ``tp`` and convert where lossless; else ConfigError."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {_shown(value)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, prefix=key + ".")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise bad
    if origin in (list, typing.List):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise bad
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float
            raise bad from None
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    return value


# Keys an earlier release had, and where they live now: (dataclass, key) -> the new spelling.
_MOVED_KEYS = {("TrainConfig", "fused_loss"): "task.options.fused_loss (the causal_lm task's option; "
                                             "`lmforge tasks` lists every task's options)"}


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    """The resolved type hints of a dataclass (cached: the parser asks for them per option)."""
    return typing.get_type_hints(cls)


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            moved = _MOVED_KEYS.get((cls.__name__, key))
            if moved:
                raise ConfigError(f"config key '{prefix}{key}' has moved: set {moved} instead")
            raise ConfigError(
                f"unknown config key '{prefix}{key}': {cls.__name__} has {', '.join(sorted(names))}")
    if cls is ModelConfig and values.get("preset"):
        values = _expand_preset(values, prefix)
    values = {k: _section_defaults(cls, k, v) for k, v in values.items()}
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in values.items()}
    cfg = cls(**kwargs)
    _check_ranges(cfg, prefix, built=set(kwargs))
    return cfg


def _section_defaults(cls: type, name: str, value: Any) -> Any:
    """A section given in part keeps its own defaults: ``data run``'s input section defaults to
    kind text and on_error skip, so ``--input.paths X`` alone reads text files, not the stdlib
    (SourceConfig's class defaults). Only the fields where the section's default differs from
    its class's are filled in, so a model section's preset still sees what the user gave."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    section = _hints(cls)[name]
    if not (isinstance(value, dict) and dataclasses.is_dataclass(section)
            and f.default_factory is not dataclasses.MISSING):  # type: ignore[misc]
        return value
    default, plain = f.default_factory(), section()  # type: ignore[misc]
    differs = {g.name: getattr(default, g.name) for g in dataclasses.fields(section)
               if getattr(default, g.name) != getattr(plain, g.name)}
    differs = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in differs.items()}
    return {**differs, **value}


def _check_ranges(cfg: Any, prefix: str, built: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Every field's range check, then the dataclass's own ``validate(prefix)`` (cross-field
    checks). Sections in ``built`` were checked when ``_build`` made them; default sections
    are checked here."""
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            if f.name not in built:
                _check_ranges(value, prefix + f.name + ".")
            continue
        _check_field(value, hints[f.name], field_check(f, hints[f.name]), prefix + f.name)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate(prefix)


def field_check(f: dataclasses.Field, tp: Any) -> Optional[Check]:
    """The range check of field ``f`` (of type ``tp``): its own, else ``finite`` for a float field."""
    check = f.metadata.get("check")
    if check is None and _base_type(tp) is float:
        return finite
    return check


def _check_field(value: Any, tp: Any, check: Optional[Check], key: str) -> None:
    """Apply ``check`` to a coerced value (each item of a list; None passes): ConfigError naming ``key``."""
    if check is None or value is None or dataclasses.is_dataclass(value):
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_field(item, tp, check, f"{key}[{index}]")
        return
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
        # Sizes and counts reach torch, numpy and the tokenizers as 64-bit integers at most.
        raise ConfigError(f"config key '{key}': expected {check.describe(tp)}, got {_shown(value)} "
                          f"(beyond a 64-bit integer)")
    problem = check.problem(value, tp)
    if problem is not None:
        raise ConfigError(f"config key '{key}': {problem}")


def _expand_preset(values: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Write a model preset's fields out under the keys the user gave (user values win).

    Done here, where we still know which keys were given, so that a value the user set equal to
    a dataclass default (``max_seq_len: 256`` on ``gpt2-124m``) still beats the preset. The
    result names every field, so ``preset`` is cleared: the config that is saved and checkpointed
    is self-contained. Presets are registered by their families (``lmforge.models.registry``).
    """
    from lmforge.models.registry import all_presets

    presets = all_presets()
    name = values["preset"]
    if name not in presets:
        raise ConfigError(f"config key '{prefix}preset': unknown model preset {name!r}; "
                          f"choose one of {', '.join(presets)}")
    return {**presets[name], **{k: v for k, v in values.items() if k != "preset"}, "preset": ""}


def takes_text(tp: Any) -> bool:
    """Whether a field of type ``tp`` takes command-line text exactly as typed.

    True for ``str`` and ``Optional[str]`` (one string) and for ``list[str]``/``tuple[str, ...]``
    (each token one string), optionally ``Optional``. Such text is never read as YAML: YAML would
    turn ``1e3`` into 1000.0, ``null``, ``~`` and ``# x`` into None, ``yes`` into True, ``- x``
    into a list and ``a: b`` into a mapping. There is no command-line spelling of None for an
    ``Optional[str]`` field (every text is a string); a YAML recipe sets it with ``null``.
    """
    origin = typing.get_origin(tp)
    if tp is str:
        return True
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return bool(args) and all(takes_text(a) for a in args)
    if origin is list:
        return typing.get_args(tp) == (str,)
    if origin is tuple:
        args = typing.get_args(tp)
        return bool(args) and all(a is str or a is Ellipsis for a in args) and args[0] is str
    return False


def field_type(cls: type, dotted: str) -> Any:
    """The type hint of the field ``dotted`` (``"source.text_field"``) of ``cls``, or None if there is none."""
    tp: Any = cls
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(tp) or part not in {f.name for f in dataclasses.fields(tp)}:
            return None
        tp = _hints(tp)[part]
    return tp


def parse_override(value: Any, tp: Any) -> Any:
    """The value a command-line override ``value`` gives a field of type ``tp`` (None: no such field).

    Text for a string field (see ``takes_text``) is kept exactly as typed: ``--prompt 1e3`` is the
    three characters, ``--prompt null`` four letters. Text for any other field is read with YAML
    rules (``--optim.lr 3e-4``, ``--train.compile true``), and so is text for an unknown key, whose
    error names the key. Lists of tokens (a list option's ``--paths a b``) and non-text values
    are passed on as they are; ``load_config`` checks them against the type.
    """
    if isinstance(value, str) and not takes_text(tp):
        # Empty or blank text stays text, so the error says got '' (YAML would read it as null).
        return _parse_scalar(value) if value.strip() else value
    return value


def _parse_scalar(text: str) -> Any:
    """Parse a CLI value with YAML rules, so `--a 1e-3`, `--b true`, `--c [x, y]` all work."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # YAML 1.1 reads "1e-3" as a string; accept it as a number. "nan" and "inf" become floats
    # too, so that the range check names them (a float field refuses them).
    if isinstance(value, str):
        for number in (int, float):
            try:
                return number(value)
            except ValueError:
                pass
    return value


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def load_config(cls: type, yaml_path: Optional[str | Path] = None,
                overrides: Optional[dict[str, Any]] = None) -> Any:
    """Build ``cls`` from defaults, then a YAML recipe, then dotted overrides (in that order).

    ``overrides`` maps dotted names (``"optim.lr"``) to values, as the command line gives them:
    a string for a string field is taken exactly as it is, other strings are parsed with YAML
    rules (``parse_override``). The recipe file is YAML throughout. Raises ``ConfigError``
    naming the offending key.
    """
    tree: dict[str, Any] = {}
    if yaml_path:
        path = Path(yaml_path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' not found: pass an existing YAML recipe (see configs/)")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            raise ConfigError(f"config file '{path}' is not UTF-8 text (byte {err.start}): pass a YAML "
                              "recipe (see configs/)") from None
        except yaml.YAMLError as err:
            first = str(err).splitlines()[0]
            raise ConfigError(f"config file '{path}' is not valid YAML: {first}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file '{path}' must be a mapping of keys to values")
        tree = loaded
    for dotted, value in (overrides or {}).items():
        _set_dotted(tree, dotted, parse_override(value, field_type(cls, dotted)))
    return _build(cls, tree)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML; ``load_config(type(cfg), path)`` gives it back."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")


def iter_fields(cls: type, prefix: str = ""):
    """Yield ``(dotted_name, type_hint, default, help)`` for every leaf field, depth first."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from iter_fields(tp, prefix + f.name + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        yield prefix + f.name, tp, default, f.metadata.get("help", "")


def type_name(tp: Any) -> str:
    return _type_name(tp)


def check_for(cls: type, dotted: str) -> Optional[Check]:
    """The range check of the field ``dotted`` of ``cls`` (``finite`` for an unchecked float), or None."""
    owner: Any = cls
    parts = dotted.split(".")
    for part in parts[:-1]:
        owner = field_type(owner, part)
    if not dataclasses.is_dataclass(owner):
        return None
    for f in dataclasses.fields(owner):
        if f.name == parts[-1]:
            return field_check(f, _hints(owner)[f.name])
    return None


def build_config(cls: type, values: dict[str, Any]) -> Any:
    """``cls`` from a plain mapping (a checkpoint's saved config), checked like a recipe."""
    return _build(cls, dict(values))
