"""`lmforge convert`: lmforge checkpoint <-> HF-format directory (config.json + safetensors + tokenizer).

- ``export_hf(checkpoint, out_dir)`` writes what ``transformers.AutoModelForCausalLM`` and
  ``AutoTokenizer.from_pretrained(out_dir)`` load: config.json, generation_config.json,
  model.safetensors (written by ``save_pretrained``, so tied weights and naming are exactly
  what HF expects), tokenizer.json, tokenizer_config.json and special_tokens_map.json.
  Only tokenizers backed by HF ``tokenizers`` (byte_bpe, wordpiece, word, char, and an
  imported "pretrained" one, written back with its tokenizer_config.json and chat template) export;
  SentencePiece kinds raise ConfigError (their HF classes handle whitespace differently
  from our settings, so ids would not match).
- ``import_hf(hf_dir, out_dir)`` reads config.json and model.safetensors (single file or
  sharded with model.safetensors.index.json; bf16/fp16 weights become fp32, the saved dtype is
  recorded in ``imported_from.source_dtype``), checks every tensor's name and shape, and
  writes a checkpoint in our layout without ``trainer_state.pt`` (``load_checkpoint``,
  ``evaluate`` and ``generate`` accept it). The tokenizer is the directory's own
  (`read_hf_tokenizer`): an lmforge export's tokenizer.json keeps its lmforge kind; any other
  (GPT-2's, LLaMA-3's, BERT's, T5's) is kept as published, kind "pretrained", its special
  tokens mapped to roles and its chat template kept (``tokenizer_dir`` overrides it). A
  tokenizer with more ids than config.json has embeddings is one CheckpointError.
- A model saved without a head (``BertModel``, ``LlamaModel``, ``GPT2Model``,
  ``T5EncoderModel``...: ``HFMapping.bases``) reads as head ``hf.BASE_HEAD`` ("base"): its
  trunk weights only. ``train.init_from`` puts any head of the family on it
  (`lmforge.models.partial_load.load_partial`); ``import_hf`` writes the family's pretraining
  head with the missing head tensors freshly initialised (listed in
  ``imported_from.new_weights``).

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
from lmforge.tokenize.base import SPECIAL_TOKENS
from lmforge.train import checkpoint as ckpt

HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
HF_INDEX = "model.safetensors.index.json"
HF_TOKENIZER = "tokenizer.json"
# Buffers older transformers versions stored next to the weights; they carry no parameters.
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")
HF_TOKENIZER_CONFIG = "tokenizer_config.json"
PRETRAINED_KIND = "pretrained"  # lmforge.tokenize.pretrained.KIND (not imported at module load)


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
    if tokenizer.kind == PRETRAINED_KIND:  # an imported tokenizer goes back out as it came in
        shutil.copyfile(source, out / HF_TOKENIZER)
        tokenizer_config = dict(tokenizer.tokenizer_config)
        tokenizer_config.update({f"{role}_token": token for role, token in tokenizer.special_tokens.items()})
        if tokenizer.chat_template is not None:
            tokenizer_config["chat_template"] = tokenizer.chat_template
        tokenizer_config["model_max_length"] = cfg.max_seq_len
        (out / HF_TOKENIZER_CONFIG).write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
        return
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
        hf_model = hf.to_hf_model(model, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id,
                                  pad_id=tokenizer.role_ids.get("pad"),
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


def _source_dtype(tensors: dict[str, torch.Tensor]) -> str:
    """The floating dtype(s) the weights were saved in ("bfloat16"; "float16+float32" when mixed)."""
    names = sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values() if t.is_floating_point()})
    return "+".join(names) or "none"


def _to_fp32(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors as fp32 (bf16/fp16 checkpoints train and compare in fp32 here)."""
    return {key: t.float() if t.is_floating_point() and t.dtype != torch.float32 else t for key, t in tensors.items()}


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


def _is_lmforge_layout(backend: Any) -> bool:
    """Whether a tokenizer.json has lmforge's five special tokens at ids 0-4 (an lmforge export)."""
    return [backend.token_to_id(tok) for tok in SPECIAL_TOKENS.values()] == list(range(len(SPECIAL_TOKENS)))


def read_hf_tokenizer(hf_dir: str | Path, cfg: Optional[ModelConfig] = None) -> Any:
    """The tokenizer of an HF directory: an lmforge export's tokenizer.json (the five lmforge
    specials at ids 0-4) as its lmforge kind, less what the family's export added (T5's
    sentinels); any other tokenizer.json as published (kind "pretrained": its own special
    tokens mapped to roles, its post-processor and chat template)."""
    from tokenizers import Tokenizer as HFBackend

    from lmforge.tokenize import load_hf_tokenizer
    from lmforge.tokenize.hf import HFTokenizer

    hf_dir = Path(hf_dir)
    path = hf_dir / HF_TOKENIZER
    if not path.is_file():
        raise TokenizerError(f"'{hf_dir}' has no {HF_TOKENIZER}: pass tokenizer_dir (--tokenizer_dir) with an "
                             "lmforge tokenizer for this model's vocabulary")
    try:
        tokenizer_json = json.loads(path.read_text(encoding="utf-8"))
        backend = HFBackend.from_str(json.dumps(tokenizer_json, ensure_ascii=False))
    except Exception as err:
        raise TokenizerError(f"cannot load '{path}' ({err}): pass tokenizer_dir (--tokenizer_dir) instead") from None
    if not _is_lmforge_layout(backend):
        return load_hf_tokenizer(hf_dir)
    try:
        cfg = cfg if cfg is not None else read_hf_source(hf_dir).config
        import_tokenizer = hf.mapping_of(cfg).import_tokenizer
        if import_tokenizer is not None:
            tokenizer_json = import_tokenizer(tokenizer_json, cfg, path)
        backend = HFBackend.from_str(json.dumps(tokenizer_json, ensure_ascii=False))
        kind = _infer_kind(tokenizer_json)
    except LmforgeError:
        raise
    except Exception as err:
        raise TokenizerError(f"cannot load '{path}' ({err}): pass tokenizer_dir (--tokenizer_dir) instead") from None
    return HFTokenizer(kind, backend)


def _write_tokenizer(hf_dir: Path, tokenizer_dir: Optional[str | Path], out: Path, cfg: Any) -> Any:
    """Fill ``out`` with the checkpoint's tokenizer: ``tokenizer_dir`` if given, else the HF
    directory's own (`read_hf_tokenizer`)."""
    from lmforge.tokenize import load_tokenizer

    if tokenizer_dir:
        tokenizer = load_tokenizer(tokenizer_dir)
        shutil.copytree(tokenizer_dir, out)
        return tokenizer
    tokenizer = read_hf_tokenizer(hf_dir, cfg)
    tokenizer.save(out)
    return tokenizer


@dataclass
class HFSource:
    """An HF directory's config.json in lmforge's terms: our resolved config, the head
    (``hf.BASE_HEAD`` for a class saved without one), a classifier's label names, the HF model
    type and class."""

    config: ModelConfig
    head: str
    id2label: dict[int, str]
    model_type: str
    hf_class: str = ""
    hf_dir: Path = Path()

    def check_vocab(self, tokenizer: Any) -> None:
        """CheckpointError when the tokenizer has ids the model has no embedding for (a
        tokenizer and config.json that disagree on the vocabulary)."""
        if tokenizer.vocab_size > self.config.vocab_size:
            raise CheckpointError(f"'{self.hf_dir}': the tokenizer has {tokenizer.vocab_size} ids but config.json's "
                                  f"vocab_size is {self.config.vocab_size} (embeddings): pass the tokenizer this "
                                  "model was trained with, or fix vocab_size")


def read_hf_source(hf_dir: str | Path) -> HFSource:
    """What an HF directory's config.json says (no weights read)."""
    hf_dir = Path(hf_dir)
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
    names = list(getattr(hf_cfg, "architectures", None) or [])
    return HFSource(cfg, head, id2label, hf_cfg.model_type, names[0] if names else "", hf_dir)


_read_source = read_hf_source


def _check_tied(hf_dir: Path, hf_state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                cfg: ModelConfig) -> None:
    if cfg.tie_embeddings and "lm_head.weight" in hf_state and "lm_head.weight" in expected:
        embedding_key = next((k for k, v in expected.items()
                              if k != "lm_head.weight" and v is expected["lm_head.weight"]), None)
        if embedding_key is not None and not torch.equal(hf_state["lm_head.weight"], hf_state[embedding_key]):
            raise CheckpointError(f"'{hf_dir}' says tie_word_embeddings but its lm_head.weight differs from "
                                  f"{embedding_key}: set tie_word_embeddings false in {HF_CONFIG}")


def _head_model(cfg: ModelConfig, head: str) -> torch.nn.Module:
    """Our model with ``head`` on the meta device (a classifier with 2 labels when the config
    names none: only the trunk's tensors are wanted from it)."""
    if head in hf.LABELLED_HEADS and cfg.num_labels <= 0:
        cfg = dataclasses.replace(cfg, num_labels=2)
    with torch.device("meta"):
        return get_family(cfg.family).build(cfg, head)


def _read_base_weights(hf_dir: Path, hf_state: dict[str, torch.Tensor], source: HFSource) -> dict[str, torch.Tensor]:
    """The trunk weights of a model saved without a head, in our names.

    Its tensor names are the headed classes' less a prefix (``HFMapping.bases``). Each of the
    family's heads is mapped in turn with the tensors the base lacks filled with NaN, and what
    comes out NaN is left out; so a tensor only some heads have (BERT's pooler) comes through,
    and a left-out tensor that is not a head's (``HFMapping.head_prefixes``) is an error.
    """
    cfg = source.config
    mapping = hf.mapping_of(cfg)
    prefix = mapping.bases[source.hf_class]
    state = {prefix + key: tensor for key, tensor in hf_state.items()}
    used: set[str] = set()
    ours: dict[str, torch.Tensor] = {}
    trunk_missing: list[str] = []
    for head in get_family(cfg.family).heads:
        meta_model = _head_model(cfg, head)
        expected = mapping.to_hf_state_dict(meta_model.state_dict(keep_vars=True), meta_model.config)
        filled = dict(state)
        for key, tensor in expected.items():
            if key in state:
                used.add(key)
                if tuple(state[key].shape) != tuple(tensor.shape):
                    raise CheckpointError(f"'{hf_dir}': tensor '{key[len(prefix):]}' has shape "
                                          f"{tuple(state[key].shape)}, the config implies {tuple(tensor.shape)}")
            else:
                filled[key] = torch.full(tuple(tensor.shape), float("nan"))
        try:
            mapped = mapping.from_hf_state_dict(filled, meta_model.config, head)
        except ConfigError as err:
            raise ConfigError(f"cannot import '{hf_dir}': {err}") from None
        for key, tensor in mapped.items():
            if tensor.is_floating_point() and tensor.numel() and bool(torch.isnan(tensor).all()):
                if not mapping.is_head_key(key):
                    trunk_missing.append(key)
            else:
                ours.setdefault(key, tensor)
    if trunk_missing:
        raise CheckpointError(f"'{hf_dir}' ({source.hf_class}) lacks {len(trunk_missing)} tensor(s) its "
                              f"{HF_CONFIG} implies (first: {', '.join(trunk_missing[:3])}): the weights do not "
                              "match the config")
    unexpected = sorted(key[len(prefix):] for key in state if key not in used
                        and not key.endswith(_IGNORED_SUFFIXES))
    if unexpected:
        raise CheckpointError(f"'{hf_dir}' has {len(unexpected)} tensor(s) its {HF_CONFIG} does not describe "
                              f"(first: {', '.join(unexpected[:3])}): the weights do not match the config")
    return ours


@dataclass
class HFWeights:
    """An HF directory's model in lmforge's terms: config, head (``hf.BASE_HEAD``: trunk only),
    weights in our names as fp32, and the dtype they were saved in."""

    config: ModelConfig
    head: str
    state_dict: dict[str, torch.Tensor]
    source_dtype: str
    source: HFSource


def _read_weights(hf_dir: Path, files: list[Path], source: HFSource) -> tuple[dict[str, torch.Tensor], str]:
    """The weights of ``files`` in our names (fp32) and their saved dtype, every tensor's name
    and shape checked first."""
    cfg, head = source.config, source.head
    mapping = hf.mapping_of(cfg)
    hf_state = _load_safetensors(files)
    dtype = _source_dtype(hf_state)
    hf_state = _to_fp32(hf_state)
    if head == hf.BASE_HEAD:
        return _read_base_weights(hf_dir, hf_state, source), dtype
    meta_model = _head_model(cfg, head)
    expected = mapping.to_hf_state_dict(meta_model.state_dict(keep_vars=True), cfg)  # tied: one object
    _check_tensors(hf_state, expected, hf_dir, mapping.optional_tensors, mapping.extra_prefixes(head))
    _check_tied(hf_dir, hf_state, expected, cfg)
    try:
        return mapping.from_hf_state_dict(hf_state, cfg, head), dtype
    except ConfigError as err:
        raise ConfigError(f"cannot import '{hf_dir}': {err}") from None


def _tokenizer_config(hf_dir: Path) -> dict[str, Any]:
    """tokenizer_config.json as a mapping ({} when absent or unreadable: it only adds hints)."""
    try:
        config = json.loads((hf_dir / HF_TOKENIZER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def read_hf_weights(hf_dir: str | Path) -> HFWeights:
    """An HF directory's config, head and weights (fp32, our names), in memory; nothing is
    written. A model saved without a head gives head ``hf.BASE_HEAD`` and its trunk weights."""
    hf_dir = Path(hf_dir)
    source = read_hf_source(hf_dir)
    state_dict, dtype = _read_weights(hf_dir, _weight_files(hf_dir), source)
    return HFWeights(source.config, source.head, state_dict, dtype, source)


def read_hf_model(hf_dir: str | Path) -> tuple[ModelConfig, str, dict[str, torch.Tensor]]:
    """``(config, head, state_dict)`` of an HF directory: our resolved config, the head its
    ``architectures`` names (``hf.BASE_HEAD`` = "base" for a class saved without a head:
    ``BertModel``, ``LlamaModel``, ``T5EncoderModel``...; then only trunk weights) and its
    weights in lmforge names as fp32 (in memory; nothing is written). For starting a run from
    HF weights (``train.init_from``)."""
    weights = read_hf_weights(hf_dir)
    return weights.config, weights.head, weights.state_dict


def import_hf(hf_dir: str | Path, out_dir: str | Path, overwrite: bool = False,
              tokenizer_dir: Optional[str | Path] = None) -> Path:
    """Write an HF-format directory (GPT-2, Llama, ... whatever a family maps) as an lmforge
    checkpoint directory (no trainer state: it can be evaluated, sampled, exported, fine-tuned).

    Weights saved in bf16/fp16 are stored as fp32 (``imported_from.source_dtype`` says what they
    were). A model saved without a head becomes the family's pretraining head (``heads[0]``)
    with the head tensors it lacks freshly initialised (seed 0), listed in
    ``imported_from.new_weights``: fine-tune it, don't sample from it."""
    from lmforge.models.partial_load import load_partial

    hf_dir = Path(hf_dir)
    source = read_hf_source(hf_dir)
    cfg = source.config
    files = _weight_files(hf_dir)
    with _atomic_output(out_dir, overwrite, hf_dir) as tmp:
        tokenizer = _write_tokenizer(hf_dir, tokenizer_dir, tmp / ckpt.TOKENIZER_DIR, cfg)
        source.check_vocab(tokenizer)
        ours, dtype = _read_weights(hf_dir, files, source)
        family = get_family(cfg.family)
        imported: dict[str, Any] = {"hf_dir": str(hf_dir), "model_type": source.model_type,
                                    "hf_class": source.hf_class, "source_dtype": dtype}
        if source.head == hf.BASE_HEAD:
            head = family.heads[0]
            with torch.random.fork_rng():
                torch.manual_seed(0)
                model = family.build(cfg, head)
            imported["new_weights"] = list(load_partial(model, ours, str(hf_dir)).new)
        else:
            head = source.head
            model = family.build(cfg, head)
            model.load_state_dict(ours, strict=True)
        sections = {"head": {"name": head, "id2label": {str(i): label for i, label in source.id2label.items()}},
                    "tokenizer": {"dir": ckpt.TOKENIZER_DIR, "kind": tokenizer.kind,
                                  "vocab_size": tokenizer.vocab_size, "fingerprint": tokenizer.fingerprint()},
                    "imported_from": imported}
        ckpt.write_model_files(tmp, model, cfg, step=0, sections=sections)
    return Path(out_dir)
