"""The "pretrained" kind: a published ``tokenizer.json`` used exactly as Hugging Face has it.

Real checkpoints come with their own special tokens (GPT-2 ``<|endoftext|>``; LLaMA-3
``<|begin_of_text|>``, ``<|eot_id|>``...; BERT ``[CLS] [SEP] [PAD] [MASK] [UNK]``; T5 ``<pad>
</s> <unk>`` and ``<extra_id_N>``), so nothing is renumbered or added: the backend is the
file as written, and the special tokens are mapped to roles from ``tokenizer_config.json``
(or ``special_tokens_map.json``) keys ``bos_token``, ``eos_token``, ``pad_token``,
``unk_token``, ``mask_token``, ``cls_token`` and ``sep_token``. A role the files do not name
is absent (id None; ``pad_id`` falls back to eos, see `Tokenizer`). The chat template comes
from tokenizer_config.json's ``chat_template`` (a string, or HF's list of named templates:
"default" is taken) or the ``chat_template.jinja`` file newer transformers writes.

Ids equal ``transformers.AutoTokenizer``'s: ``encode`` = ``encode(text,
add_special_tokens=False)`` (with special-token strings in raw text kept as plain text, as
every lmforge kind does), ``frame`` = the tokenizer.json post-processor (what
``add_special_tokens=True`` adds), ``encode_template`` = the ids of a rendered chat.

Saved as ``tokenizer.json`` + ``tokenizer_config.json`` (the source's, chat template
included) + ``lmforge_tokenizer.json`` (kind, role map, vocabulary size).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

from tokenizers import Tokenizer as HFBackend

from lmforge.errors import TokenizerError
from lmforge.tokenize.hf import BackendTokenizer

KIND = "pretrained"
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
# Our role name -> the key transformers uses in tokenizer_config.json / special_tokens_map.json.
ROLE_KEYS = {"bos": "bos_token", "eos": "eos_token", "pad": "pad_token", "unk": "unk_token",
             "mask": "mask_token", "cls": "cls_token", "sep": "sep_token"}


def _token_string(value: Any) -> Optional[str]:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str) and value["content"]:
        return value["content"]
    return None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise TokenizerError(f"cannot read '{path}' ({err}): copy the tokenizer files again") from None
    if not isinstance(value, dict):
        raise TokenizerError(f"'{path}' is not a JSON object: copy the tokenizer files again")
    return value


def read_chat_template(directory: Path, tokenizer_config: dict[str, Any]) -> Optional[str]:
    """The chat template: ``chat_template.jinja`` if present (transformers >= 4.5x writes it),
    else tokenizer_config.json's ``chat_template`` (a string, or a list of {name, template}
    from which "default" is taken)."""
    jinja = directory / CHAT_TEMPLATE_FILE
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = tokenizer_config.get("chat_template")
    if isinstance(template, str) and template:
        return template
    if isinstance(template, list):
        named = {entry.get("name"): entry.get("template") for entry in template if isinstance(entry, dict)}
        chosen = named.get("default")
        return chosen if isinstance(chosen, str) and chosen else None
    return None


def _frame_plan(post_processor: Optional[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(tokens before, tokens after) the sequence that the tokenizer.json post-processor adds to
    one sequence: TemplateProcessing's ``single``, BertProcessing/RobertaProcessing's cls ... sep,
    a Sequence's processors in order; ByteLevel and none add nothing."""
    if not post_processor:
        return [], []
    kind = post_processor.get("type")
    if kind == "Sequence":
        before: list[str] = []
        after: list[str] = []
        for inner in post_processor.get("processors") or []:
            b, a = _frame_plan(inner)
            before, after = b + before, after + a
        return before, after
    if kind in ("BertProcessing", "RobertaProcessing"):
        return [post_processor["cls"][0]], [post_processor["sep"][0]]
    if kind == "TemplateProcessing":
        before, after, seen = [], [], False
        for item in post_processor.get("single") or []:
            if "Sequence" in item:
                seen = True
            elif "SpecialToken" in item:
                name = item["SpecialToken"]["id"]
                ids = (post_processor.get("special_tokens") or {}).get(name, {}).get("tokens") or [name]
                (after if seen else before).extend(ids)
        return before, after
    if kind == "ByteLevel":
        return [], []
    raise TokenizerError(f"tokenizer.json post-processor {kind!r} is not supported (TemplateProcessing, "
                         "BertProcessing, RobertaProcessing, ByteLevel, Sequence)")


class PretrainedTokenizer(BackendTokenizer):
    """A published tokenizer.json with its own special tokens, mapped to roles."""

    native_file = TOKENIZER_JSON

    def __init__(self, backend_json: str, tokenizer_config: dict[str, Any], special_tokens: dict[str, str],
                 chat_template: Optional[str]) -> None:
        try:
            backend = HFBackend.from_str(backend_json)
        except Exception as err:  # tokenizers raises plain Exception on bad JSON
            raise TokenizerError(f"cannot load tokenizer.json ({err}): copy the tokenizer files again") from None
        self._attach(backend)  # special-token strings in raw text stay plain text (see base.py)
        self._json = backend_json
        parsed = json.loads(backend_json)
        self._added_specials = [entry["content"] for entry in parsed.get("added_tokens") or []
                                if entry.get("special") and isinstance(entry.get("content"), str)]
        self.tokenizer_config = dict(tokenizer_config)
        self._chat_template = chat_template
        before, after = _frame_plan(parsed.get("post_processor"))
        super().__init__(KIND, special_tokens)
        self._frame_before = [self._id_of(tok) for tok in before]
        self._frame_after = [self._id_of(tok) for tok in after]

    def _id_of(self, token: str) -> int:
        token_id = self.token_to_id(token)
        if token_id is None:
            raise TokenizerError(f"tokenizer.json's post-processor adds {token!r}, which is not in its vocabulary: "
                                 "copy the tokenizer files again")
        return token_id

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_hf_dir(cls, directory: str | Path) -> PretrainedTokenizer:
        """The tokenizer of an HF model directory (tokenizer.json, tokenizer_config.json,
        special_tokens_map.json, chat_template.jinja)."""
        path = Path(directory)
        native = path / TOKENIZER_JSON
        if not native.is_file():
            raise TokenizerError(f"'{path}' has no {TOKENIZER_JSON} (only fast tokenizers are read): save the "
                                 "tokenizer with transformers' PreTrainedTokenizerFast.save_pretrained, or pass "
                                 "an lmforge tokenizer directory")
        config = _read_json(path / TOKENIZER_CONFIG)
        special_map = _read_json(path / SPECIAL_TOKENS_MAP)
        roles: dict[str, str] = {}
        for role, key in ROLE_KEYS.items():
            token = _token_string(config.get(key)) or _token_string(special_map.get(key))
            if token is not None:
                roles[role] = token
        backend_json = native.read_text(encoding="utf-8")
        config["chat_template"] = read_chat_template(path, config)
        if config["chat_template"] is None:
            del config["chat_template"]
        return cls(backend_json, config, roles, config.get("chat_template"))

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> PretrainedTokenizer:
        """Read a directory written by ``save`` (``meta``: its lmforge_tokenizer.json)."""
        config = _read_json(directory / TOKENIZER_CONFIG)
        roles = meta.get("special_tokens")
        if not isinstance(roles, dict) or not all(isinstance(v, str) for v in roles.values()):
            raise TokenizerError(f"'{directory}' has no role map in its lmforge_tokenizer.json: import the "
                                 "tokenizer again (`lmforge convert --to lmforge`)")
        native = directory / TOKENIZER_JSON
        if not native.is_file():
            raise TokenizerError(f"{directory} is incomplete: {TOKENIZER_JSON!r} is missing; copy the whole "
                                 "directory it was saved to")
        return cls(native.read_text(encoding="utf-8"), config, dict(roles), read_chat_template(directory, config))

    # ------------------------------------------------------------------ Tokenizer

    def encode_template(self, text: str) -> list[int]:
        """Template output: special tokens written in it become their ids (the backend's own
        added-token matching, as HF's ``apply_chat_template(tokenize=True)``)."""
        self._backend.encode_special_tokens = False
        try:
            return self._backend.encode(text, add_special_tokens=False).ids
        finally:
            self._backend.encode_special_tokens = True

    def frame(self, ids: list[int]) -> list[int]:
        return self._frame_before + list(ids) + self._frame_after

    @property
    def chat_template(self) -> str | None:
        return self._chat_template

    def _extra_special_ids(self) -> Iterable[int]:
        return [i for i in (self.token_to_id(tok) for tok in self._added_specials) if i is not None]

    def _extra_special_tokens(self) -> Iterable[str]:
        return self._added_specials

    def _save_native(self, directory: Path) -> None:
        (directory / TOKENIZER_JSON).write_text(self._json, encoding="utf-8")
        config = dict(self.tokenizer_config)
        config.pop("chat_template", None)
        if self._chat_template is not None:
            config["chat_template"] = self._chat_template
        for role, token in self.special_tokens.items():
            config.setdefault(ROLE_KEYS[role], token)
        (directory / TOKENIZER_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                  encoding="utf-8")

    def _model_bytes(self) -> bytes:
        canonical = json.dumps(json.loads(self._json), sort_keys=True, ensure_ascii=False)
        return canonical.encode("utf-8")

    def __getstate__(self) -> dict[str, Any]:
        return {"json": self._json, "config": self.tokenizer_config, "roles": self.special_tokens,
                "chat_template": self._chat_template}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["json"], state["config"], state["roles"], state["chat_template"])  # type: ignore[misc]
