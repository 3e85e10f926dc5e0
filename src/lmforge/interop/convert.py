"""`lmforge convert`: lmforge checkpoint <-> HF-format directory (config.json + safetensors + tokenizer).

- ``export_hf(checkpoint, out_dir)`` writes what ``transformers.AutoModelForCausalLM`` and
  ``AutoTokenizer.from_pretrained(out_dir)`` load: config.json, generation_config.json,
  model.safetensors (written by ``save_pretrained``, so tied weights and naming are exactly
  what HF expects), tokenizer.json, tokenizer_config.json and special_tokens_map.json.
  Only tokenizers backed by HF ``tokenizers`` (byte_bpe, wordpiece, word, char) export;
  SentencePiece kinds raise ConfigError (their HF classes handle whitespace differently
  from our settings, so ids would not match).
- ``import_hf(hf_dir, out_dir)`` reads config.json and model.safetensors (single file or
  sharded with model.safetensors.index.json), checks every tensor's name and shape, and
  writes a checkpoint in our layout without ``trainer_state.pt`` (``load_checkpoint``,
  ``evaluate`` and ``generate`` accept it). Our tokenizer format needs the five lmforge
  special tokens (``<s> <pad> </s> <unk> <mask>``), so the HF ``tokenizer.json`` is used
  only if it has all five (an lmforge export does); otherwise pass ``tokenizer_dir`` with an
  lmforge tokenizer for the model's vocabulary. A checkpoint never lacks a tokenizer.

T5: lmforge's span corruption uses the top 100 ids of the model's vocabulary as sentinels
(``<extra_id_0>`` = vocab_size - 1, T5's convention), ids our tokenizer does not have. The
export adds them to tokenizer.json as special tokens ``<extra_id_0>``..``<extra_id_99>`` at
exactly those ids (so ``tokenizer.decode`` shows them) and the import takes them out again
(the lmforge tokenizer comes back identical). config.json carries the tokenizer's pad and eos
ids, pad doubling as decoder start, as ``SpanCorruptionTask`` trains.

BERT heads: an lmforge BERT checkpoint holds the MLM head or a classifier; which one is the
``head`` field of its config.json (``interop.hf.BERT_HEADS``: masked_lm,
sequence_classification, token_classification), read off the weights when absent. It
exports to the HF class of that name with ``num_labels`` and ``id2label`` (the checkpoint's
``id2label`` field, else LABEL_i); the import picks the head from config.json's
``architectures`` and writes ``head`` and ``id2label`` back. ``load_checkpoint_with_head``
loads such a checkpoint with its head (``checkpoint.load_checkpoint`` builds the MLM model).
T5 has no length limit in its config; the import takes ``max_seq_len`` back from
tokenizer_config.json's ``model_max_length`` (an lmforge export writes it), else 512.

Both directions go through ``lmforge.interop.hf`` (config conversion and the weight mapping),
so a family added there converts here without changes. Output is assembled in a temporary
sibling directory and renamed into place: a failure leaves no output directory behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import torch

from lmforge.errors import CheckpointError, ConfigError, LmforgeError, TokenizerError
from lmforge.interop import hf
from lmforge.train import checkpoint as ckpt

HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
HF_INDEX = "model.safetensors.index.json"
HF_TOKENIZER = "tokenizer.json"
# Buffers older transformers versions stored next to the weights; they carry no parameters.
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")
HF_TOKENIZER_CONFIG = "tokenizer_config.json"
# Checkpoint config.json fields (beside "model") that say which BERT head and labels it has.
HEAD_FIELD, LABELS_FIELD = "head", "id2label"
NUM_SENTINELS = 100  # as lmforge.train.tasks.SpanCorruptionTask (checked by a test)


def sentinel_token(index: int) -> str:
    """T5's name of sentinel ``index`` (Raffel et al. 2020, sec. 3.1.4; HF's ``<extra_id_N>``)."""
    return f"<extra_id_{index}>"


# --------------------------------------------------------------------------- output directory


@contextmanager
def _atomic_output(out_dir: str | Path, overwrite: bool, source: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir``; on success it replaces ``out_dir``."""
    final = Path(out_dir)
    if not str(out_dir):
        raise ConfigError("no output directory given: set out_dir (--out_dir)")
    if final.exists():
        if not final.is_dir():
            raise ConfigError(f"output '{final}' exists and is not a directory: choose another out_dir")
        if any(final.iterdir()) and not overwrite:
            raise ConfigError(f"output directory '{final}' is not empty: choose another out_dir "
                              "or set overwrite (--overwrite true)")
        resolved, src = final.resolve(), source.resolve()
        if resolved == src or resolved in src.parents:
            raise ConfigError(f"output directory '{final}' holds the source '{source}': choose another out_dir")
    final.parent.mkdir(parents=True, exist_ok=True)
    stamp = f"{os.getpid()}-{time.time_ns()}"
    tmp = final.parent / f".tmp-{final.name}-{stamp}"
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():  # empty, or overwrite was asked for: move it aside, then drop it
            old = final.parent / f".old-{final.name}-{stamp}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _import_transformers() -> Any:
    return hf._import_transformers()


# --------------------------------------------------------------------------- export


def _with_sentinels(tokenizer_json: dict[str, Any], tokenizer_vocab_size: int, model_vocab_size: int,
                    ckpt_dir: Path) -> dict[str, Any]:
    """``tokenizer_json`` with the T5 sentinels: ``<extra_id_i>`` at id model_vocab_size - 1 - i, in
    the model's vocabulary (so the id is kept when the file loads; an added token alone would be
    renumbered to the next free id) and among the added special tokens."""
    first = model_vocab_size - NUM_SENTINELS
    if first < tokenizer_vocab_size:
        raise ConfigError(f"checkpoint '{ckpt_dir}': a t5 model needs {NUM_SENTINELS} sentinel ids above the "
                          f"tokenizer's {tokenizer_vocab_size}, but model.vocab_size is {model_vocab_size}: "
                          f"it must be at least {tokenizer_vocab_size + NUM_SENTINELS}")
    vocab = tokenizer_json["model"]["vocab"]
    clash = [sentinel_token(i) for i in range(NUM_SENTINELS) if sentinel_token(i) in vocab]
    if clash:
        raise ConfigError(f"checkpoint '{ckpt_dir}': the tokenizer already has {clash[0]} as an ordinary "
                          "token, so the T5 sentinels cannot take that name")
    for index in range(NUM_SENTINELS):
        token_id = model_vocab_size - 1 - index
        vocab[sentinel_token(index)] = token_id
        tokenizer_json["added_tokens"].append({"id": token_id, "content": sentinel_token(index), "single_word": False,
                                               "lstrip": False, "rstrip": False, "normalized": False,
                                               "special": True})
    return tokenizer_json


def _tokenizer_files(tokenizer: Any, ckpt_dir: Path, out: Path, cfg: Any) -> None:
    """tokenizer.json (copied byte for byte; for t5 with the sentinels added) plus the two small
    files AutoTokenizer reads."""
    if tokenizer.native_file != HF_TOKENIZER:
        raise ConfigError(f"checkpoint '{ckpt_dir}' has a {tokenizer.kind} (SentencePiece) tokenizer: only "
                          "byte_bpe, wordpiece, word and char tokenizers export to HF format for now")
    source = ckpt_dir / ckpt.TOKENIZER_DIR / HF_TOKENIZER
    extra: dict[str, Any] = {}
    if cfg.family == "t5":
        tokenizer_json = _with_sentinels(json.loads(source.read_text(encoding="utf-8")), tokenizer.vocab_size,
                                         cfg.vocab_size, ckpt_dir)
        (out / HF_TOKENIZER).write_text(json.dumps(tokenizer_json, ensure_ascii=False), encoding="utf-8")
        # transformers >= 5 reads extra_special_tokens, 4.x additional_special_tokens
        sentinels = [sentinel_token(i) for i in range(NUM_SENTINELS)]
        extra = {"extra_special_tokens": sentinels, "additional_special_tokens": sentinels}
    else:
        shutil.copyfile(source, out / HF_TOKENIZER)
    special = {f"{role}_token": token for role, token in tokenizer.special_tokens.items()}
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        **extra,
        "model_max_length": cfg.max_seq_len,
        # Our decoders already produce the text; HF's cleanup would glue " ." into ".".
        "clean_up_tokenization_spaces": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n", encoding="utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")


def load_checkpoint_with_head(checkpoint: str | Path) -> tuple[torch.nn.Module, Any, Path, dict[str, Any]]:
    """``(model, tokenizer, ckpt_dir, labels)`` like ``checkpoint.load_checkpoint``, but a BERT
    checkpoint is built with its own head (see the module docstring: the ``head`` field, else the
    weights' names); ``labels`` is the checkpoint's ``id2label`` ({} when it has none)."""
    from safetensors import safe_open

    from lmforge.tokenize import load_tokenizer

    ckpt_dir = ckpt.resolve_checkpoint(checkpoint)
    cfg = ckpt.read_model_config(ckpt_dir)
    if cfg.family != "bert":
        model, tokenizer, ckpt_dir = ckpt.load_checkpoint(ckpt_dir)
        return model, tokenizer, ckpt_dir, {}
    raw = json.loads((ckpt_dir / ckpt.CONFIG_FILE).read_text(encoding="utf-8"))
    try:
        with safe_open(str(ckpt_dir / ckpt.MODEL_FILE), "pt") as weights:
            keys = set(weights.keys())
        head = hf.bert_head_of_weights(keys, cfg.num_labels)
    except ConfigError as err:
        raise CheckpointError(f"checkpoint '{ckpt_dir}': {err}") from None
    except Exception as err:  # safetensors raises several types for truncated/corrupt files
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has an unreadable {ckpt.MODEL_FILE} "
                              f"({type(err).__name__}: {err}): use another checkpoint") from None
    named = raw.get(HEAD_FIELD, head)
    if named != head:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' says {HEAD_FIELD} '{named}' but its weights are those of "
                              f"a {head} model: fix the {HEAD_FIELD} field of its {ckpt.CONFIG_FILE} "
                              f"(one of {', '.join(hf.BERT_HEADS)})")
    from lmforge.models import bert

    model = getattr(bert, hf.BERT_HEADS[head])(cfg)
    ckpt.load_weights(model, ckpt_dir)
    labels = {int(i): str(label) for i, label in (raw.get(LABELS_FIELD) or {}).items()}
    return model.eval(), load_tokenizer(ckpt_dir / ckpt.TOKENIZER_DIR), ckpt_dir, labels


def export_hf(checkpoint: str | Path, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write our checkpoint (or a run directory's newest one) as an HF-format directory.

    The result loads with ``AutoModelForCausalLM.from_pretrained(out_dir)`` (``AutoModelForMaskedLM``
    for a BERT MLM, ``AutoModelForSequenceClassification`` / ``...TokenClassification`` for a BERT
    classifier, ``T5ForConditionalGeneration`` for T5; no missing or unexpected keys) and
    ``AutoTokenizer.from_pretrained(out_dir)``; weights are fp32.
    """
    _import_transformers()  # fail before loading anything when the transformers extra is missing
    model, tokenizer, ckpt_dir, labels = load_checkpoint_with_head(checkpoint)
    cfg = model.config
    with _atomic_output(out_dir, overwrite, ckpt_dir) as tmp:
        _tokenizer_files(tokenizer, ckpt_dir, tmp, cfg)  # fails fast for SentencePiece kinds
        # The family's own HF class (BertForMaskedLM for bert, ...ForCausalLM for decoders), then
        # save_pretrained: HF decides the file names, drops tied heads and writes
        # generation_config.json, so whatever a family needs is right by construction.
        hf_model = hf.to_hf_model(model, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id,
                                  pad_id=tokenizer.pad_id, id2label=labels or None)
        hf_model.save_pretrained(str(tmp), safe_serialization=True)
        if cfg.family == "t5" and not cfg.tie_embeddings:
            _write_untied_t5_config(tmp / HF_CONFIG)
    return Path(out_dir)


def _write_untied_t5_config(path: Path) -> None:
    """Say ``tie_word_embeddings: false`` in a T5 v1.1 (untied) export's config.json, as the
    google/t5-v1_1-* files do. transformers 5 keeps every T5 config tied in memory (and writes
    that) but reads false back as "do not rescale"; transformers 4 would read true as "tie the
    head to the embedding", which is wrong for v1.1."""
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tie_word_embeddings"] = False
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- import


def _read_hf_config(hf_dir: Path) -> Any:
    """The `transformers` config of ``hf_dir`` (its model_type must be one `interop.hf` converts)."""
    transformers = _import_transformers()
    try:
        raw = json.loads((hf_dir / HF_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"'{hf_dir / HF_CONFIG}' is unreadable ({err}): pass an HF checkpoint directory") from None
    model_type = raw.get("model_type") if isinstance(raw, dict) else None
    if not isinstance(model_type, str) or not model_type:
        raise CheckpointError(f"'{hf_dir / HF_CONFIG}' has no model_type: pass an HF model directory")
    if model_type not in transformers.CONFIG_MAPPING:
        # Ask interop.hf for its own "not supported, use ..." message, so the list it names stays current.
        try:
            hf.model_config_from_hf(SimpleNamespace(model_type=model_type))
        except ConfigError as err:
            raise ConfigError(f"cannot import '{hf_dir}': {err}") from None
        raise ConfigError(f"cannot import '{hf_dir}': HF model type '{model_type}' is not supported")
    try:
        return transformers.CONFIG_MAPPING[model_type].from_dict(raw)
    except Exception as err:  # transformers validates configs with several exception types
        raise ConfigError(f"cannot import '{hf_dir}': its {HF_CONFIG} is invalid ({type(err).__name__}: {err})") from None


def _weight_files(hf_dir: Path) -> list[Path]:
    index = hf_dir / HF_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(f"'{index}' is unreadable ({type(err).__name__}: {err}): "
                                  "re-save the HF model") from None
        missing = [name for name in names if not (hf_dir / name).is_file()]
        if missing:
            raise CheckpointError(f"'{hf_dir}' is missing weight shards {', '.join(missing[:3])}: copy the whole directory")
        return [hf_dir / name for name in names]
    if (hf_dir / HF_WEIGHTS).is_file():
        return [hf_dir / HF_WEIGHTS]
    raise CheckpointError(f"not an HF checkpoint directory: '{hf_dir}' has no {HF_WEIGHTS} or {HF_INDEX} "
                          "(only safetensors weights are read; re-save with safe_serialization=True)")


def _load_safetensors(files: list[Path]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            tensors.update(load_file(str(path), device="cpu"))
        except Exception as err:  # safetensors raises several types for truncated/corrupt files
            raise CheckpointError(f"'{path}' is unreadable ({type(err).__name__}: {err}): "
                                  "the file is truncated or corrupt; copy it again") from None
    return tensors


def _check_tensors(hf_state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], tied: bool,
                   hf_dir: Path, optional: frozenset[str] = frozenset(), ignored: tuple[str, ...] = ()) -> None:
    """Every tensor the config implies is present with its shape; nothing else is (buffers aside).

    A tied tensor (the same storage under a second name: GPT-2/Llama ``lm_head.weight``, BERT's
    ``cls.predictions.decoder.*``, T5's ``encoder/decoder.embed_tokens``) may be left out, as
    ``save_pretrained`` does; so may the names in ``optional``. Names starting with one of
    ``ignored`` may be present and are not imported.
    """
    first_name: dict[int, str] = {}
    optional = set(optional)
    for key, tensor in expected.items():
        if tensor.data_ptr() in first_name:
            optional.add(key)
        first_name.setdefault(tensor.data_ptr(), key)
    missing = [k for k in expected if k not in hf_state and k not in optional]
    if missing:
        raise CheckpointError(f"'{hf_dir}' lacks {len(missing)} tensor(s) its {HF_CONFIG} implies "
                              f"(first: {', '.join(missing[:3])}): the weights do not match the config")
    unexpected = [k for k in hf_state if k not in expected and not k.endswith(_IGNORED_SUFFIXES)
                  and not k.startswith(ignored)]
    if unexpected:
        raise CheckpointError(f"'{hf_dir}' has {len(unexpected)} tensor(s) its {HF_CONFIG} does not describe "
                              f"(first: {', '.join(sorted(unexpected)[:3])}): the weights do not match the config")
    for key, tensor in expected.items():
        if key in hf_state and tuple(hf_state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"'{hf_dir}': tensor '{key}' has shape {tuple(hf_state[key].shape)}, "
                                  f"the config implies {tuple(tensor.shape)}")


def _infer_kind(tokenizer_json: dict[str, Any]) -> str:
    """Our tokenizer kind for an HF tokenizer.json (only the fingerprint depends on it)."""
    model_type = (tokenizer_json.get("model") or {}).get("type")
    pre = json.dumps(tokenizer_json.get("pre_tokenizer"))
    if model_type == "BPE":
        return "byte_bpe"
    if model_type == "WordPiece":
        return "wordpiece"
    if model_type == "WordLevel":
        return "char" if '"Split"' in pre else "word"
    raise TokenizerError(f"HF tokenizer model '{model_type}' has no lmforge kind (BPE, WordPiece, WordLevel)")


def _without_sentinels(tokenizer_json: dict[str, Any], model_vocab_size: int, path: Path) -> dict[str, Any]:
    """``tokenizer_json`` less the T5 sentinels an export added (see ``_with_sentinels``); TokenizerError
    when they sit at other ids than lmforge's span corruption would use for this model."""
    sentinels = {entry["content"]: entry["id"] for entry in tokenizer_json.get("added_tokens", [])
                 if entry.get("content") in {sentinel_token(i) for i in range(NUM_SENTINELS)}}
    if not sentinels:
        return tokenizer_json
    moved = [name for index in range(NUM_SENTINELS) if sentinels.get(name := sentinel_token(index))
             != model_vocab_size - 1 - index]
    if moved:
        raise TokenizerError(f"'{path}' has T5 sentinels at other ids than lmforge uses ({moved[0]} should be "
                             f"{model_vocab_size - 1 - int(moved[0][10:-1])}, the top ids of the model's "
                             "vocabulary): pass tokenizer_dir (--tokenizer_dir) with an lmforge tokenizer")
    tokenizer_json["added_tokens"] = [entry for entry in tokenizer_json["added_tokens"]
                                      if entry["content"] not in sentinels]
    vocab = (tokenizer_json.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        for name in sentinels:
            vocab.pop(name, None)
    return tokenizer_json


def _write_tokenizer(hf_dir: Path, tokenizer_dir: Optional[str | Path], out: Path, cfg: Any) -> Any:
    """Fill ``out`` with an lmforge tokenizer: ``tokenizer_dir`` if given, else the HF tokenizer.json
    (for t5 without the sentinels the export added)."""
    from tokenizers import Tokenizer as HFBackend

    from lmforge.tokenize import SPECIAL_TOKENS, load_tokenizer
    from lmforge.tokenize.hf import HFTokenizer

    if tokenizer_dir:
        tokenizer = load_tokenizer(tokenizer_dir)
        shutil.copytree(tokenizer_dir, out)
        return tokenizer
    path = hf_dir / HF_TOKENIZER
    if not path.is_file():
        raise TokenizerError(f"'{hf_dir}' has no {HF_TOKENIZER}: pass tokenizer_dir (--tokenizer_dir) with an "
                             "lmforge tokenizer for this model's vocabulary")
    try:
        tokenizer_json = json.loads(path.read_text(encoding="utf-8"))
        if cfg.family == "t5":
            tokenizer_json = _without_sentinels(tokenizer_json, cfg.vocab_size, path)
        backend = HFBackend.from_str(json.dumps(tokenizer_json, ensure_ascii=False))
        kind = _infer_kind(tokenizer_json)
    except LmforgeError:
        raise
    except Exception as err:
        raise TokenizerError(f"cannot load '{path}' ({err}): pass tokenizer_dir (--tokenizer_dir) instead") from None
    absent = [tok for tok in SPECIAL_TOKENS.values() if backend.token_to_id(tok) is None]
    if absent:
        raise TokenizerError(f"'{path}' lacks the lmforge special tokens {' '.join(absent)} (lmforge needs "
                             f"{' '.join(SPECIAL_TOKENS.values())}): pass tokenizer_dir (--tokenizer_dir) "
                             "with an lmforge tokenizer for this model's vocabulary")
    tokenizer = HFTokenizer(kind, backend)
    tokenizer.save(out)
    return tokenizer


def import_hf(hf_dir: str | Path, out_dir: str | Path, overwrite: bool = False,
              tokenizer_dir: Optional[str | Path] = None) -> Path:
    """Write an HF-format directory (GPT-2, Llama, ... whatever `interop.hf` maps) as an lmforge
    checkpoint directory (no trainer state: it can be evaluated, sampled, exported, fine-tuned)."""
    from lmforge.models import bert, build_model

    hf_dir = Path(hf_dir)
    if not (hf_dir / HF_CONFIG).is_file():
        raise CheckpointError(f"not an HF checkpoint directory: '{hf_dir}' has no {HF_CONFIG}")
    hf_cfg = _read_hf_config(hf_dir)
    extra_config: dict[str, Any] = {}
    head = "masked_lm"
    try:
        cfg = hf.model_config_from_hf(hf_cfg)
        if cfg.family == "bert":
            head = hf.bert_head_of_hf_config(hf_cfg)
            if head != "masked_lm":
                cfg = dataclasses.replace(cfg, num_labels=hf_cfg.num_labels)
                extra_config = {HEAD_FIELD: head,
                                LABELS_FIELD: {str(i): label for i, label in sorted(hf_cfg.id2label.items())}}
            else:
                extra_config = {HEAD_FIELD: head}
        if cfg.family == "t5":
            cfg = dataclasses.replace(cfg, max_seq_len=_t5_max_seq_len(hf_dir, cfg.max_seq_len))
    except ConfigError as err:
        raise ConfigError(f"cannot import '{hf_dir}': {err}") from None
    files = _weight_files(hf_dir)
    with _atomic_output(out_dir, overwrite, hf_dir) as tmp:
        tokenizer = _write_tokenizer(hf_dir, tokenizer_dir, tmp / ckpt.TOKENIZER_DIR, cfg)
        if tokenizer.vocab_size > cfg.vocab_size:
            raise CheckpointError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                                  f"{cfg.vocab_size} embeddings: pass the tokenizer this model was trained with")
        hf_state = _load_safetensors(files)
        model = getattr(bert, hf.BERT_HEADS[head])(cfg) if cfg.family == "bert" else build_model(cfg)
        expected = hf.to_hf_state_dict(model.state_dict(), cfg)
        # A T5 head saved without its own tensor is the shared embedding (transformers 5 ties it
        # in every model it builds from a config; `from_hf_state_dict` then copies the embedding).
        optional = frozenset({"lm_head.weight"}) if cfg.family == "t5" else frozenset()
        ignored = hf.BERT_PRETRAINING_EXTRAS if cfg.family == "bert" and head == "masked_lm" else ()
        _check_tensors(hf_state, expected, cfg.tie_embeddings, hf_dir, optional, ignored)
        if cfg.tie_embeddings and "lm_head.weight" in hf_state:
            embedding_key = next((k for k, v in expected.items()
                                  if k != "lm_head.weight" and v.data_ptr() == expected["lm_head.weight"].data_ptr()),
                                 None)
            if embedding_key is not None and not torch.equal(hf_state["lm_head.weight"], hf_state[embedding_key]):
                raise CheckpointError(f"'{hf_dir}' says tie_word_embeddings but its lm_head.weight differs from "
                                      f"{embedding_key}: set tie_word_embeddings false in {HF_CONFIG}")
        try:
            ours = hf.from_hf_state_dict(hf_state, cfg, bert_head=head)
        except ConfigError as err:
            raise ConfigError(f"cannot import '{hf_dir}': {err}") from None
        dtype = next(iter(ours.values())).dtype
        model.to(dtype).load_state_dict(ours, strict=True)
        ckpt.write_model_files(tmp, model, cfg, step=0,
                               extra_config={**extra_config,
                                             "imported_from": {"hf_dir": str(hf_dir), "model_type": hf_cfg.model_type}})
    return Path(out_dir)


def _t5_max_seq_len(hf_dir: Path, default: int) -> int:
    """T5's config has no length limit (relative positions); an lmforge export records ours as
    tokenizer_config.json's model_max_length, so take it back from there when it is plausible."""
    try:
        value = json.loads((hf_dir / HF_TOKENIZER_CONFIG).read_text(encoding="utf-8")).get("model_max_length")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return default
    return value if isinstance(value, int) and 0 < value <= 1_000_000 else default
