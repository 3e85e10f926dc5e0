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

What a family needs beyond its weights and config is asked of its `HFMapping`
(``lmforge.interop.hf``; ``Family.hf``): T5 adds its span-corruption sentinels to the exported
tokenizer.json and takes them out again on import, records ``max_seq_len`` (its config has no
length limit) in tokenizer_config.json and takes it back, and marks an untied (v1.1) head in
config.json; BERT's MLM import leaves out a pretraining checkpoint's pooler and next-sentence
head. Which head a checkpoint holds is its ``head`` section (``checkpoint.CheckpointInfo``):
the export writes the HF class of that head, with a classifier's ``num_labels`` and
``id2label`` (LABEL_i when it has none); the import picks the head from config.json's
``architectures`` and writes the head section back. ``read_hf_model`` gives an HF directory's
config, head and weights in lmforge names without writing anything (``train.init_from``).

Both directions go through ``lmforge.interop.hf`` (config conversion and the weight mapping),
so a family that registers an HF mapping converts here without changes. Output is assembled in a temporary
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
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import torch

from lmforge.config import ModelConfig
from lmforge.errors import CheckpointError, ConfigError, LmforgeError, TokenizerError
from lmforge.interop import hf
from lmforge.models.registry import get_family
from lmforge.train import checkpoint as ckpt

HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
HF_INDEX = "model.safetensors.index.json"
HF_TOKENIZER = "tokenizer.json"
# Buffers older transformers versions stored next to the weights; they carry no parameters.
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")
HF_TOKENIZER_CONFIG = "tokenizer_config.json"


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
    return hf.import_transformers()


# --------------------------------------------------------------------------- export


def _tokenizer_files(tokenizer: Any, ckpt_dir: Path, out: Path, cfg: Any) -> None:
    """tokenizer.json (copied byte for byte, unless the family adds to it: T5's sentinels) plus
    the two small files AutoTokenizer reads."""
    if tokenizer.native_file != HF_TOKENIZER:
        raise ConfigError(f"checkpoint '{ckpt_dir}' has a {tokenizer.kind} (SentencePiece) tokenizer: only "
                          "byte_bpe, wordpiece, word and char tokenizers export to HF format for now")
    source = ckpt_dir / ckpt.TOKENIZER_DIR / HF_TOKENIZER
    extra: dict[str, Any] = {}
    export_tokenizer = hf.mapping_of(cfg).export_tokenizer
    if export_tokenizer is not None:
        tokenizer_json, extra = export_tokenizer(json.loads(source.read_text(encoding="utf-8")), tokenizer.vocab_size,
                                                 cfg, ckpt_dir)
        (out / HF_TOKENIZER).write_text(json.dumps(tokenizer_json, ensure_ascii=False), encoding="utf-8")
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


def export_hf(checkpoint: str | Path, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write our checkpoint (or a run directory's newest one) as an HF-format directory.

    The result loads with ``AutoModelForCausalLM.from_pretrained(out_dir)`` (``AutoModelForMaskedLM``
    for a BERT MLM, ``AutoModelForSequenceClassification`` / ``...TokenClassification`` for a BERT
    classifier, ``T5ForConditionalGeneration`` for T5; no missing or unexpected keys) and
    ``AutoTokenizer.from_pretrained(out_dir)``; weights are fp32.
    """
    _import_transformers()  # fail before loading anything when the transformers extra is missing
    model, tokenizer, ckpt_dir = ckpt.load_checkpoint(checkpoint)
    info = ckpt.read_checkpoint_info(ckpt_dir)
    cfg = model.config
    mapping = hf.mapping_of(cfg)
    with _atomic_output(out_dir, overwrite, ckpt_dir) as tmp:
        _tokenizer_files(tokenizer, ckpt_dir, tmp, cfg)  # fails fast for SentencePiece kinds
        # The HF class of the checkpoint's head, then save_pretrained: HF decides the file
        # names, drops tied heads and writes generation_config.json, so whatever a family
        # needs is right by construction.
        hf_model = hf.to_hf_model(model, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                                  id2label=info.head.labels() or None, head=info.head.name)
        hf_model.save_pretrained(str(tmp), safe_serialization=True)
        if mapping.fix_config_json is not None:
            config = json.loads((tmp / HF_CONFIG).read_text(encoding="utf-8"))
            mapping.fix_config_json(config, cfg)
            (tmp / HF_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Path(out_dir)


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


def _check_tensors(hf_state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                   hf_dir: Path, optional: frozenset[str] = frozenset(), ignored: tuple[str, ...] = ()) -> None:
    """Every tensor the config implies is present with its shape; nothing else is (buffers aside).

    ``expected`` is the HF state dict of our model built on the meta device. A tied tensor (the
    same tensor under a second name: GPT-2/Llama ``lm_head.weight``, BERT's
    ``cls.predictions.decoder.*``, T5's ``encoder/decoder.embed_tokens``) may be left out, as
    ``save_pretrained`` does; so may the names in ``optional``. Names starting with one of
    ``ignored`` may be present and are not imported.
    """
    first_name: dict[int, str] = {}
    optional = set(optional)
    for key, tensor in expected.items():
        if id(tensor) in first_name:
            optional.add(key)
        first_name.setdefault(id(tensor), key)
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


def _write_tokenizer(hf_dir: Path, tokenizer_dir: Optional[str | Path], out: Path, cfg: Any) -> Any:
    """Fill ``out`` with an lmforge tokenizer: ``tokenizer_dir`` if given, else the HF tokenizer.json
    (less what the family's export added to it: T5's sentinels)."""
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
        import_tokenizer = hf.mapping_of(cfg).import_tokenizer
        if import_tokenizer is not None:
            tokenizer_json = import_tokenizer(tokenizer_json, cfg, path)
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


@dataclass
class HFSource:
    """An HF directory's config.json in lmforge's terms: our resolved config, the head, a
    classifier's label names and the HF model type."""

    config: ModelConfig
    head: str
    id2label: dict[int, str]
    model_type: str


def _read_source(hf_dir: Path) -> HFSource:
    if not (hf_dir / HF_CONFIG).is_file():
        raise CheckpointError(f"not an HF checkpoint directory: '{hf_dir}' has no {HF_CONFIG}")
    hf_cfg = _read_hf_config(hf_dir)
    try:
        cfg = hf.model_config_from_hf(hf_cfg)
        head = hf.head_of_hf_config(hf_cfg)
        id2label: dict[int, str] = {}
        if head in hf.LABELLED_HEADS:
            cfg = dataclasses.replace(cfg, num_labels=hf_cfg.num_labels)
            id2label = {int(i): str(label) for i, label in sorted(hf_cfg.id2label.items())}
        mapping = hf.mapping_of(cfg)
        if mapping.config_from_tokenizer_config is not None:
            cfg = mapping.config_from_tokenizer_config(cfg, _tokenizer_config(hf_dir))
    except ConfigError as err:
        raise ConfigError(f"cannot import '{hf_dir}': {err}") from None
    return HFSource(cfg, head, id2label, hf_cfg.model_type)


def _read_weights(hf_dir: Path, files: list[Path], source: HFSource) -> dict[str, torch.Tensor]:
    """The weights of ``files`` in our names, every tensor's name and shape checked first."""
    cfg, head = source.config, source.head
    mapping = hf.mapping_of(cfg)
    hf_state = _load_safetensors(files)
    with torch.device("meta"):
        meta_model = get_family(cfg.family).build(cfg, head)
    expected = mapping.to_hf_state_dict(meta_model.state_dict(keep_vars=True), cfg)  # tied: one object
    _check_tensors(hf_state, expected, hf_dir, mapping.optional_tensors, mapping.extra_prefixes(head))
    if cfg.tie_embeddings and "lm_head.weight" in hf_state:
        embedding_key = next((k for k, v in expected.items()
                              if k != "lm_head.weight" and v is expected["lm_head.weight"]), None)
        if embedding_key is not None and not torch.equal(hf_state["lm_head.weight"], hf_state[embedding_key]):
            raise CheckpointError(f"'{hf_dir}' says tie_word_embeddings but its lm_head.weight differs from "
                                  f"{embedding_key}: set tie_word_embeddings false in {HF_CONFIG}")
    try:
        return mapping.from_hf_state_dict(hf_state, cfg, head)
    except ConfigError as err:
        raise ConfigError(f"cannot import '{hf_dir}': {err}") from None


def _tokenizer_config(hf_dir: Path) -> dict[str, Any]:
    """tokenizer_config.json as a mapping ({} when absent or unreadable: it only adds hints)."""
    try:
        config = json.loads((hf_dir / HF_TOKENIZER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def read_hf_model(hf_dir: str | Path) -> tuple[ModelConfig, str, dict[str, torch.Tensor]]:
    """``(config, head, state_dict)`` of an HF directory: our resolved config, the head its
    ``architectures`` names and its weights in lmforge names (in memory; nothing is written).
    For starting a run from HF weights (``train.init_from``)."""
    hf_dir = Path(hf_dir)
    source = _read_source(hf_dir)
    return source.config, source.head, _read_weights(hf_dir, _weight_files(hf_dir), source)


def import_hf(hf_dir: str | Path, out_dir: str | Path, overwrite: bool = False,
              tokenizer_dir: Optional[str | Path] = None) -> Path:
    """Write an HF-format directory (GPT-2, Llama, ... whatever a family maps) as an lmforge
    checkpoint directory (no trainer state: it can be evaluated, sampled, exported, fine-tuned)."""
    hf_dir = Path(hf_dir)
    source = _read_source(hf_dir)
    cfg = source.config
    files = _weight_files(hf_dir)
    with _atomic_output(out_dir, overwrite, hf_dir) as tmp:
        tokenizer = _write_tokenizer(hf_dir, tokenizer_dir, tmp / ckpt.TOKENIZER_DIR, cfg)
        if tokenizer.vocab_size > cfg.vocab_size:
            raise CheckpointError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                                  f"{cfg.vocab_size} embeddings: pass the tokenizer this model was trained with")
        ours = _read_weights(hf_dir, files, source)
        model = get_family(cfg.family).build(cfg, source.head)
        model.to(next(iter(ours.values())).dtype).load_state_dict(ours, strict=True)
        sections = {"head": {"name": source.head, "id2label": {str(i): label for i, label in source.id2label.items()}},
                    "tokenizer": {"dir": ckpt.TOKENIZER_DIR, "kind": tokenizer.kind,
                                  "vocab_size": tokenizer.vocab_size, "fingerprint": tokenizer.fingerprint()},
                    "imported_from": {"hf_dir": str(hf_dir), "model_type": source.model_type}}
        ckpt.write_model_files(tmp, model, cfg, step=0, sections=sections)
    return Path(out_dir)
