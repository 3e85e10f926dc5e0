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
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from lmforge.errors import ConfigError


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a help string (mutable defaults are copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


option = _f  # public name for step option dataclasses outside this file


# --------------------------------------------------------------------------- data


@dataclass
class CrawlConfig:
    """A polite web crawl (source kind ``crawl``): robots.txt, per-host rate limit, retries."""

    start_urls: list[str] = _f([], "URLs the crawl starts from")
    max_pages: int = _f(100, "stop after fetching this many pages")
    max_depth: int = _f(2, "follow links at most this many hops from a start URL")
    same_domain: bool = _f(True, "only follow links to the start URLs' hosts")
    delay_seconds: float = _f(1.0, "minimum seconds between two requests to the same host")
    retries: int = _f(3, "retries of a failed request (connection error, 429, 5xx)")
    backoff_seconds: float = _f(1.0, "first retry waits this long, doubling each retry")
    timeout_seconds: float = _f(10.0, "per-request timeout")
    user_agent: str = _f("lmforge-crawler/0.1 (+https://github.com/lmforge/lmforge)",
                         "User-Agent header; robots.txt rules for it are obeyed")
    max_bytes: int = _f(5_000_000, "skip (count) a response larger than this")


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
    paths: list[str] = _f([], "files, directories or glob patterns (not used by stdlib or crawl)")
    text_field: str = _f("text", "JSONL/Parquet field or CSV column that holds the document text")
    on_error: Literal["raise", "skip"] = _f(
        "raise", "raise: stop at the first bad document; skip: count and record it, go on")
    max_documents: int = _f(0, "stop after this many documents (0 = all)")
    crawl: CrawlConfig = field(default_factory=CrawlConfig)


@dataclass
class PrepareConfig:
    """`lmforge prepare`: read a source, split it into train/val documents (JSONL)."""

    source: SourceConfig = field(default_factory=SourceConfig)
    out_dir: str = _f("runs/quickstart/documents", "where train.jsonl, val.jsonl and stats.json go")
    val_fraction: float = _f(0.05, "fraction of files (documents) held out for validation")
    split_seed: int = _f(0, "seed of the deterministic train/val split (by file)")


@dataclass
class DataOutputConfig:
    """Where `lmforge data run` writes kept documents (ready for `lmforge prepare`)."""

    dir: str = _f("runs/data", "output directory: shards, stats.json, rejects and markers go here")
    format: Literal["jsonl", "parquet"] = _f("jsonl", "format of the output shards")
    val_fraction: float = _f(0.01, "fraction of kept documents written to the val split (by content hash)")
    split_seed: int = _f(0, "seed of the deterministic train/val split")
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
    workers: int = _f(0, "parallel shard workers (0 = one per CPU core)")
    ray_address: str = _f("", "Ray cluster address ('' starts a local Ray instance)")


@dataclass
class DataReportConfig:
    """`lmforge data report DIR`: what each step removed, and a plot of the distributions."""

    dir: str = _f("runs/data", "the output directory of `lmforge data run`")
    plot: str = _f("", "PNG to write (default: DIR/report.png)")


@dataclass
class ClassifierTrainConfig:
    """`lmforge data train-classifier`: a hashed n-gram logistic regression on labelled JSONL."""

    data: str = _f("", "JSONL file of labelled examples")
    text_field: str = _f("text", "field holding the text")
    label_field: str = _f("label", "field holding the label: 1/true = flag (drop), 0/false = keep")
    out: str = _f("runs/classifier/model.npz", "where the trained classifier is written")
    val_fraction: float = _f(0.2, "held-out fraction for the precision/recall report")
    num_buckets: int = _f(1 << 20, "hashed feature space size")
    word_ngrams: int = _f(2, "word n-grams 1..N are features")
    char_ngrams: int = _f(0, "character n-grams 3..N are features (0 = off)")
    epochs: int = _f(10, "passes over the training split")
    lr: float = _f(0.5, "learning rate of the SGD/Adagrad updates")
    l2: float = _f(1e-6, "L2 weight decay")
    threshold: float = _f(0.5, "probability at or above which a text is flagged")
    seed: int = _f(0, "seed of the split and the shuffling")


@dataclass
class TokenizerConfig:
    """`lmforge tokenizer`: train a tokenizer on prepared documents and save it."""

    kind: Literal["byte_bpe", "wordpiece", "word", "sp_unigram", "sp_bpe", "char"] = _f(
        "byte_bpe", "algorithm: byte-level BPE, WordPiece, word-level (HF tokenizers), "
        "SentencePiece Unigram/BPE, or character-level")
    input: str = _f("runs/quickstart/documents/train.jsonl", "JSONL documents to train on")
    out_dir: str = _f("runs/quickstart/tokenizer", "directory the tokenizer is saved to")
    vocab_size: int = _f(4096, "vocabulary size including special tokens")
    min_frequency: int = _f(2, "minimum pair/word frequency (BPE, WordPiece, word)")
    max_train_bytes: int = _f(200_000_000, "sample at most this many bytes of text to train on")
    lowercase: bool = _f(False, "lowercase text before tokenizing (WordPiece/word)")


@dataclass
class EncodeConfig:
    """`lmforge encode`: tokenize prepared documents into token shards (.bin + .idx)."""

    documents_dir: str = _f("runs/quickstart/documents", "directory with train.jsonl and val.jsonl")
    tokenizer_dir: str = _f("runs/quickstart/tokenizer", "tokenizer to encode with")
    out_dir: str = _f("runs/quickstart/shards", "where train.bin/.idx, val.bin/.idx and meta.json go")
    num_workers: int = _f(2, "tokenizer processes")
    append_eos: bool = _f(True, "end every document with the eos token")


# --------------------------------------------------------------------------- model


@dataclass
class ModelConfig:
    """A transformer (decoder-only, or the BERT encoder). `preset` fills the fields; explicit fields override it."""

    preset: str = _f("", "named preset (see `lmforge models`); empty = use the fields below")
    family: Literal["gpt2", "llama", "mistral", "falcon", "bert", "t5"] = _f(
        "llama", "gpt2: learned positions, LayerNorm, GELU; llama: RoPE, RMSNorm, SwiGLU, grouped-query "
        "attention; mistral: llama + sliding-window attention; falcon: RoPE, multi-query attention, "
        "parallel attention/MLP, LayerNorm, GELU; bert: bidirectional post-norm encoder with learned "
        "positions and token types, trained by masked LM; t5: pre-norm encoder-decoder with relative "
        "position bias and RMS norms, trained by span corruption")
    vocab_size: int = _f(0, "0 = take it from the tokenizer")
    max_seq_len: int = _f(256, "longest context the model supports")
    dim: int = _f(256, "residual stream width")
    num_layers: int = _f(4, "transformer blocks")
    num_heads: int = _f(4, "query heads")
    num_kv_heads: int = _f(0, "key/value heads (0 = num_heads, i.e. multi-head attention)")
    hidden_dim: int = _f(0, "MLP width (0 = 4*dim for GELU, 8/3*dim rounded to multiple_of for SwiGLU)")
    multiple_of: int = _f(64, "round the SwiGLU hidden width up to a multiple of this")
    norm_eps: float = _f(1e-5, "epsilon of LayerNorm/RMSNorm")
    rope_theta: float = _f(10000.0, "RoPE base frequency")
    sliding_window: int = _f(0, "each query attends to itself and the sliding_window-1 keys before it "
                             "(Mistral); 0 = full causal attention")
    tie_embeddings: bool = _f(True, "share the input embedding and output projection")
    bias: bool = _f(False, "biases in linear layers and LayerNorm (GPT-2 uses them)")
    dropout: float = _f(0.0, "dropout on attention and residual branches")
    init_std: float = _f(0.02, "std of the normal init; residual projections scaled by 1/sqrt(2*num_layers)")
    type_vocab_size: int = _f(0, "bert: token-type (segment) embeddings, 2 in BERT (0 = none)")
    num_labels: int = _f(0, "bert: classes of the sequence/token classification head (0 = no such head)")
    num_decoder_layers: int = _f(0, "t5: decoder blocks (0 = num_layers)")
    head_dim: int = _f(0, "t5: width of each attention head (0 = dim / num_heads; T5 v1.1 sizes differ)")
    relative_attention_num_buckets: int = _f(32, "t5: relative position buckets of the attention bias")
    relative_attention_max_distance: int = _f(128, "t5: distances from this on share the last bucket")
    feed_forward: Literal["relu", "gated-gelu"] = _f(
        "relu", "t5: MLP kind, relu (T5 v1.0) or gated-gelu (T5 v1.1, GEGLU with the tanh GELU)")


# --------------------------------------------------------------------------- training


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    name: Literal["sgd", "adam", "adamw", "lamb"] = _f("adamw", "optimiser")
    lr: float = _f(1e-3, "peak learning rate")
    weight_decay: float = _f(0.1, "decoupled weight decay (not applied to norms, biases, embeddings)")
    beta1: float = _f(0.9, "Adam/LAMB beta1")
    beta2: float = _f(0.95, "Adam/LAMB beta2")
    eps: float = _f(1e-8, "Adam/LAMB epsilon")
    momentum: float = _f(0.9, "SGD momentum")
    schedule: Literal["constant", "linear", "cosine", "wsd"] = _f(
        "cosine", "learning-rate schedule after warmup (wsd = warmup-stable-decay)")
    warmup_steps: int = _f(100, "linear warmup steps from 0 to lr")
    min_lr_ratio: float = _f(0.1, "final learning rate as a fraction of lr (linear, cosine, wsd)")
    decay_fraction: float = _f(0.2, "wsd: fraction of steps spent in the final decay")
    grad_clip: float = _f(1.0, "clip the global gradient norm to this (0 = off)")


@dataclass
class TrainConfig:
    """The training loop: batch, budget, precision, evaluation and checkpoints."""

    shards_dir: str = _f("runs/quickstart/shards", "token shards from `lmforge encode`")
    tokenizer_dir: str = _f("runs/quickstart/tokenizer", "tokenizer saved into every checkpoint")
    run_dir: str = _f("runs/quickstart", "where checkpoints, metrics.jsonl and config.yaml go")
    seq_len: int = _f(256, "tokens per training sequence")
    batch_size: int = _f(16, "sequences per micro-batch (per process)")
    grad_accum: int = _f(1, "micro-batches per optimiser step")
    max_steps: int = _f(1000, "stop after this many optimiser steps (0 = no limit)")
    max_tokens: int = _f(0, "stop after this many training tokens (0 = no limit)")
    max_seconds: float = _f(0.0, "stop after this much wall-clock training time (0 = no limit)")
    eval_interval: int = _f(200, "evaluate on the val split every N steps (0 = only at the end)")
    eval_batches: int = _f(20, "micro-batches per periodic evaluation")
    log_interval: int = _f(10, "log every N steps")
    checkpoint_interval: int = _f(0, "save a checkpoint every N steps (0 = only at the end)")
    keep_last: int = _f(2, "keep this many most recent checkpoints")
    resume: bool = _f(True, "resume from the newest checkpoint in run_dir if there is one")
    precision: Literal["fp32", "bf16", "fp16"] = _f("fp32", "autocast dtype (fp16 adds a grad scaler)")
    device: str = _f("auto", "auto, cpu, cuda, cuda:1, ...")
    compile: bool = _f(False, "torch.compile the model")
    fused_loss: bool = _f(True, "causal LM: compute the output head and the loss in row chunks of at most 2^26 "
                                "logits (same loss and gradients; less memory once B*T*V exceeds one chunk)")
    keep_freed_memory: bool = _f(True, "on CPU: keep freed memory for the next step instead of returning it "
                                       "to the OS (glibc mallopt; 1.18x on a 135M model)")
    seed: int = _f(1337, "seed for init and data order")
    on_nonfinite: Literal["stop", "skip", "rollback"] = _f(
        "stop", "what a non-finite loss or gradient norm does: stop (one error line; the last "
        "checkpoint stays the newest), skip (drop that step's update, counted as skipped_steps in "
        "metrics.jsonl) or rollback (reload the last checkpoint and go on at a lower learning rate)")
    rollback_lr_factor: float = _f(0.5, "rollback: multiply the learning rate by this at each rollback")
    max_rollbacks: int = _f(3, "rollback: stop after this many rollbacks in one run")


@dataclass
class PretrainConfig:
    """`lmforge pretrain`: pretraining on token shards (causal LM, masked LM or span corruption, by family)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class EvaluateConfig:
    """`lmforge evaluate CKPT`: loss, perplexity and bits per byte."""

    checkpoint: str = _f("", "checkpoint directory (or a run directory: its newest checkpoint)")
    data: str = _f("", "token shards directory (uses its val split) or a text/JSONL file")
    split: str = _f("val", "which split of a shards directory")
    seq_len: int = _f(0, "window length (0 = the model's max_seq_len)")
    batch_size: int = _f(8, "windows per batch")
    max_tokens: int = _f(0, "evaluate at most this many tokens (0 = all)")
    device: str = _f("auto", "auto, cpu, cuda, ...")


@dataclass
class GenerateConfig:
    """`lmforge generate CKPT --prompt ...`: sample text with a KV cache."""

    checkpoint: str = _f("", "checkpoint directory (or a run directory: its newest checkpoint)")
    prompt: str = _f("", "text to continue")
    max_new_tokens: int = _f(128, "tokens to generate")
    temperature: float = _f(0.8, "softmax temperature (0 = greedy)")
    top_k: int = _f(0, "keep the k most likely tokens (0 = off)")
    top_p: float = _f(1.0, "nucleus sampling: keep the smallest set with this much probability")
    repetition_penalty: float = _f(1.0, "divide positive logits of seen tokens by this (CTRL)")
    stop: list[str] = _f([], "stop when any of these strings appears in the output")
    num_samples: int = _f(1, "independent samples")
    seed: int = _f(0, "sampling seed")
    device: str = _f("auto", "auto, cpu, cuda, ...")


@dataclass
class ConvertConfig:
    """`lmforge convert SOURCE --to hf|lmforge --out_dir DIR`: HF-format export and import.

    Families: GPT-2, LLaMA, Mistral, Falcon, BERT (masked LM, sequence and token classification
    heads) and T5 (v1.0 and v1.1; the 100 span-corruption sentinels are written to tokenizer.json
    as <extra_id_N>)."""

    to: Literal["hf", "lmforge"] = _f(
        "hf", "hf: export an lmforge checkpoint (or a run directory's newest) to an HF-format directory; "
              "lmforge: import an HF-format directory (config.json + safetensors) as an lmforge checkpoint")
    source: str = _f("", "the checkpoint (to hf) or HF model directory (to lmforge) to convert")
    out_dir: str = _f("", "directory to write; must not exist or be empty unless overwrite is set")
    overwrite: bool = _f(False, "replace a non-empty out_dir")
    tokenizer_dir: str = _f("", "to lmforge only: an lmforge tokenizer to store with the model, needed when the "
                                "HF directory has no tokenizer.json with lmforge's five special tokens "
                                "(e.g. a T5 checkpoint with a SentencePiece tokenizer)")


@dataclass
class QuickstartConfig:
    """`lmforge quickstart`: prepare -> tokenizer -> encode -> pretrain -> evaluate -> generate."""

    run_dir: str = _f("runs/quickstart", "everything goes under this directory")
    recipe: str = _f("", "pretrain recipe YAML (default: the packaged quickstart recipe)")
    max_documents: int = _f(0, "use at most this many stdlib files (0 = all)")
    vocab_size: int = _f(4096, "tokenizer vocabulary size")
    prompts: list[str] = _f(["import os\n", "def parse_args(", "class Stack:\n    def __init__(self"],
                            "prompts to sample from at the end (no trailing space: BPE tokens carry it)")
    max_new_tokens: int = _f(96, "tokens per sample")


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
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type hint ``tp`` and convert where lossless; else ConfigError."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
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
        return float(value)
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise ConfigError(
                f"unknown config key '{prefix}{key}': {cls.__name__} has {', '.join(sorted(names))}")
    if cls is ModelConfig and values.get("preset"):
        values = _expand_preset(values, prefix)
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in values.items()}
    return cls(**kwargs)


def _expand_preset(values: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Write a model preset's fields out under the keys the user gave (user values win).

    Done here, where we still know which keys were given, so that a value the user set equal to
    a dataclass default (``max_seq_len: 256`` on ``gpt2-124m``) still beats the preset. The
    result names every field, so ``preset`` is cleared: the config that is saved and checkpointed
    is self-contained.
    """
    from lmforge.models.presets import PRESETS

    name = values["preset"]
    if name not in PRESETS:
        raise ConfigError(f"config key '{prefix}preset': unknown model preset {name!r}; "
                          f"choose one of {', '.join(PRESETS)}")
    return {**PRESETS[name], **{k: v for k, v in values.items() if k != "preset"}, "preset": ""}


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
        return _parse_scalar(value)
    return value


def _parse_scalar(text: str) -> Any:
    """Parse a CLI value with YAML rules, so `--a 1e-3`, `--b true`, `--c [x, y]` all work."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # YAML 1.1 reads "1e-3" as a string; accept it as a number.
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
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
