"""Weights and configs between lmforge models and `transformers`: the generic driver.

Each model family that has an HF counterpart registers an `HFMapping` (``Family.hf``, in its
file under ``lmforge.models.families``): its HF ``model_type``, the HF class of each of its
heads, its config conversion both ways and its weight mapping both ways, plus the few
family-specific extras `lmforge.interop.convert` asks for (tensors an HF directory may leave
out or carry in excess, tokenizer extras, config.json fix-ups). The functions here find the
family and call its mapping; none of them knows a family by name.

The decoder families share one kind of mapping, a list of rules (our keys, HF key,
transpose?) that runs both ways (`rules_to_hf`, `rules_from_hf`): HF may fuse several of our
projections into one tensor (our tensors concatenated along the output rows) and store a
weight transposed (GPT-2's Conv1D). `transformers` is imported only where needed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.models.presets import resolve_model_config
from lmforge.models.registry import Family, families, get_family

# The head of an HF model saved without one (`HFMapping.bases`): not one of a family's heads,
# only a source of trunk weights (`lmforge.train.init_from`, `lmforge.interop.convert`).
BASE_HEAD = "base"
Rule = tuple[list[str], str, bool]  # (our keys, concatenated along dim 0; HF key; transpose)
StateDict = dict[str, torch.Tensor]
# Heads whose HF config carries num_labels and the label names (id2label / label2id).
LABELLED_HEADS = ("sequence_classification", "token_classification")


def _no_extra_prefixes(head: str) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class HFMapping:
    """How one family maps onto `transformers`.

    - ``classes``: our head name -> HF class name (``aliases``: other HF class names that
      import as one of our heads, e.g. BERT's pretraining class as masked_lm).
    - ``config_to_hf(cfg, tokens)``: the HF config for a resolved ``cfg`` (``tokens``: the
      bos/eos/pad ids as HF keyword arguments); ConfigError where HF cannot express it.
    - ``config_from_hf(config)``: our resolved config; ConfigError for what we cannot build.
    - ``to_hf_state_dict(state_dict, cfg)`` / ``from_hf_state_dict(hf_state, cfg, head)``.
    - ``optional_tensors``: HF tensor names an HF directory may leave out (beside tied
      copies, which are always optional); ``extra_prefixes(head)``: HF tensor name prefixes an
      import of ``head`` may find and leaves out.
    - ``prepare_hf_model(hf_model, cfg)``: fix up a freshly built HF model before the weights
      load (e.g. untie a head transformers tied); ``fix_config_json(config, cfg)``: edit the
      exported config.json's dict.
    - ``bases``: HF classes saved without a head (``LlamaModel``, ``BertModel``,
      ``T5EncoderModel``) -> the prefix their tensor names take inside the headed classes
      (``"model."``, ``"bert."``, ``""``). Such a directory imports as head ``BASE_HEAD``: the
      trunk weights only, which `lmforge.train.init_from` loads under any head of the family.
    - ``head_prefixes``: prefixes of our state-dict keys that belong to a head rather than to
      the trunk (an LM head, BERT's pooler and classifiers, T5's decoder): a model built with
      one head may start from another head's (or a base's) weights, and only these may be
      missing from the source (they keep the model's own init).
    - ``export_tokenizer(tokenizer_json, tokenizer_vocab_size, cfg, ckpt_dir)`` -> (the
      tokenizer.json to write, extra tokenizer_config.json entries); ``import_tokenizer(
      tokenizer_json, cfg, path)`` undoes it; ``config_from_tokenizer_config(cfg,
      tokenizer_config)`` takes back what the HF config has no field for.
    """

    model_type: str
    classes: Mapping[str, str]
    config_to_hf: Callable[[ModelConfig, dict[str, Optional[int]]], Any]
    config_from_hf: Callable[[Any], ModelConfig]
    to_hf_state_dict: Callable[[StateDict, ModelConfig], StateDict]
    from_hf_state_dict: Callable[[StateDict, ModelConfig, str], StateDict]
    aliases: Mapping[str, str] = field(default_factory=dict)
    optional_tensors: frozenset[str] = frozenset()
    extra_prefixes: Callable[[str], tuple[str, ...]] = _no_extra_prefixes
    prepare_hf_model: Optional[Callable[[Any, ModelConfig], None]] = None
    fix_config_json: Optional[Callable[[dict[str, Any], ModelConfig], None]] = None
    export_tokenizer: Optional[Callable[[dict[str, Any], int, ModelConfig, Path],
                                        tuple[dict[str, Any], dict[str, Any]]]] = None
    import_tokenizer: Optional[Callable[[dict[str, Any], ModelConfig, Path], dict[str, Any]]] = None
    config_from_tokenizer_config: Optional[Callable[[ModelConfig, dict[str, Any]], ModelConfig]] = None
    bases: Mapping[str, str] = field(default_factory=dict)
    head_prefixes: tuple[str, ...] = ("output.",)

    def is_head_key(self, key: str) -> bool:
        """Whether our state-dict ``key`` belongs to a head (see ``head_prefixes``)."""
        return key.startswith(self.head_prefixes)


def import_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ConfigError("Hugging Face conversion needs transformers: pip install 'lmforge[hf]'") from None
    return transformers


# --------------------------------------------------------------------------- finding the mapping


def mapping_of(cfg: ModelConfig) -> HFMapping:
    """The HF mapping of ``cfg``'s family; ConfigError when it has none."""
    family = get_family(cfg.family)
    if family.hf is None:
        raise ConfigError(f"model family {family.name} has no Hugging Face counterpart: it cannot be converted")
    return family.hf


def family_of_model_type(model_type: str) -> Family:
    """The family whose HF mapping has ``model_type``; ConfigError naming the supported ones."""
    mapped = {family.hf.model_type: family for family in families().values() if family.hf is not None}
    if model_type not in mapped:
        raise ConfigError(f"HF model type '{model_type}' is not supported: use a {', '.join(mapped)} model")
    return mapped[model_type]


def head_of_hf_config(config: Any) -> str:
    """Our head for an HF config: the one its ``architectures`` names (a family with one head
    has no choice to make)."""
    family = family_of_model_type(getattr(config, "model_type", ""))
    mapping: HFMapping = family.hf
    names = list(getattr(config, "architectures", None) or [mapping.classes[family.heads[0]]])
    if names and all(name in mapping.bases for name in names):
        return BASE_HEAD
    if len(mapping.classes) == 1:
        return next(iter(mapping.classes))
    heads = {head for head, name in mapping.classes.items() if name in names}
    heads |= {mapping.aliases[name] for name in names if name in mapping.aliases}
    if len(heads) != 1:
        raise ConfigError(f"HF {mapping.model_type} architecture {', '.join(names)} is not supported: use one of "
                          f"{', '.join([*mapping.classes.values(), *mapping.bases])}")
    return heads.pop()


def head_of_model(model: torch.nn.Module) -> str:
    """Which of its family's heads ``model`` is (by its parameter names)."""
    from lmforge.models import head_of_weights

    return head_of_weights(model.config, set(model.state_dict()))


# --------------------------------------------------------------------------- configs and weights


def hf_config(cfg: ModelConfig, bos_id: int | None = None, eos_id: int | None = None,
              pad_id: int | None = None) -> Any:
    """The `transformers` config describing the same model (with ``num_labels`` for a
    classifier); ConfigError where the HF architecture cannot express it."""
    cfg = resolve_model_config(cfg)
    config = mapping_of(cfg).config_to_hf(cfg, {"bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": pad_id})
    if cfg.num_labels > 0:
        config.num_labels = cfg.num_labels
    return config


def model_config_from_hf(config: Any) -> ModelConfig:
    """Our resolved `ModelConfig` for an HF config; ConfigError for what we lack. A classifier's
    ``num_labels`` is left 0 (HF sets it on every config): `from_hf_model` and the import set it
    for the heads that have one."""
    return family_of_model_type(getattr(config, "model_type", "")).hf.config_from_hf(config)


def to_hf_state_dict(state_dict: StateDict, cfg: ModelConfig) -> StateDict:
    """Our state dict -> the HF model's."""
    cfg = resolve_model_config(cfg)
    return mapping_of(cfg).to_hf_state_dict(state_dict, cfg)


def from_hf_state_dict(hf_state_dict: StateDict, cfg: ModelConfig, head: Optional[str] = None) -> StateDict:
    """The HF model's state dict -> ours for head ``head`` (None: the family's first), loadable
    with ``model.load_state_dict(..., strict=True)``."""
    cfg = resolve_model_config(cfg)
    family = get_family(cfg.family)
    return mapping_of(cfg).from_hf_state_dict(hf_state_dict, cfg, family.check_head(head or family.heads[0]))


def our_shapes(cfg: ModelConfig, head: str) -> dict[str, torch.Size]:
    """Every tensor of our state dict and its shape, from a model on the meta device (no memory)."""
    with torch.device("meta"):
        return {key: tensor.shape for key, tensor in get_family(cfg.family).build(cfg, head).state_dict().items()}


def _labelled_config(config: Any, num_labels: int, id2label: Optional[dict[int, str]]) -> None:
    if not id2label:
        return
    if sorted(int(i) for i in id2label) != list(range(num_labels)):
        raise ConfigError(f"id2label names labels {sorted(id2label)} but the classifier has "
                          f"{num_labels} (ids 0..{num_labels - 1})")
    config.id2label = {int(i): str(label) for i, label in id2label.items()}
    config.label2id = {label: i for i, label in config.id2label.items()}


def to_hf_model(model: torch.nn.Module, bos_id: int | None = None, eos_id: int | None = None,
                pad_id: int | None = None, id2label: dict[int, str] | None = None, head: Optional[str] = None) -> Any:
    """The `transformers` model of our model's family and head (``head`` None: read off the
    model's parameters) with its weights (fp32, on CPU, in eval mode); ``id2label`` names a
    classifier's labels (HF's LABEL_i when not given)."""
    transformers = import_transformers()
    cfg = model.config
    mapping = mapping_of(cfg)
    head = head or head_of_model(model)
    config = hf_config(cfg, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)
    if head in LABELLED_HEADS:
        _labelled_config(config, cfg.num_labels, id2label)
    hf_model = getattr(transformers, mapping.classes[head])(config)
    if mapping.prepare_hf_model is not None:
        mapping.prepare_hf_model(hf_model, cfg)
    state_dict = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    hf_model.load_state_dict(mapping.to_hf_state_dict(state_dict, resolve_model_config(cfg)), strict=True)
    return hf_model.eval()


def from_hf_model(hf_model: Any) -> torch.nn.Module:
    """Our model (the head of the HF model's class) with an HF model's weights."""
    family = family_of_model_type(getattr(hf_model.config, "model_type", ""))
    mapping: HFMapping = family.hf
    name = type(hf_model).__name__
    heads = [head for head, class_name in mapping.classes.items() if class_name == name]
    if not heads:
        raise ConfigError(f"HF class {name} is not supported: use one of {', '.join(mapping.classes.values())}")
    cfg = mapping.config_from_hf(hf_model.config)
    if heads[0] in LABELLED_HEADS:
        cfg = dataclasses.replace(cfg, num_labels=hf_model.config.num_labels)
    model = family.build(cfg, heads[0])
    model.load_state_dict(mapping.from_hf_state_dict(hf_model.state_dict(), cfg, heads[0]), strict=True)
    return model


# --------------------------------------------------------------------------- rule-based mappings


def rules_to_hf(state_dict: StateDict, rules: list[Rule]) -> StateDict:
    """Apply ``rules`` to our state dict. A bias our model does not have becomes zeros (HF
    GPT-2 always has biases; zeros compute the same function)."""
    out: StateDict = {}
    for ours, hf_key, transpose in rules:
        parts = []
        for key in ours:
            if key in state_dict:
                parts.append(state_dict[key])
            else:  # a bias the model does not have: as many zeros as its weight has rows
                weight = state_dict[key.rsplit(".", 1)[0] + ".weight"]
                parts.append(weight.new_zeros(weight.shape[0]))
        tensor = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
        out[hf_key] = (tensor.t() if transpose else tensor).contiguous()
    return out


def rules_from_hf(hf_state_dict: StateDict, rules: list[Rule], cfg: ModelConfig, head: str) -> StateDict:
    """Undo ``rules``: split fused tensors back into ours (by our shapes), transpose back; a
    missing HF head of a tied model is the token embedding; an HF bias our config leaves out
    must be zero."""
    shapes = our_shapes(cfg, head)
    out: StateDict = {}
    for ours, hf_key, transpose in rules:
        if hf_key not in hf_state_dict:
            if ours == ["output.weight"] and cfg.tie_embeddings:
                out["output.weight"] = out["tok_embeddings.weight"]
                continue
            raise ConfigError(f"HF state dict has no '{hf_key}': the HF model does not match the "
                              f"{cfg.family} config (layers, bias, tied embeddings)")
        tensor = hf_state_dict[hf_key]
        if ours[0] not in shapes:  # a bias HF always has (GPT-2) and this config leaves out
            if torch.count_nonzero(tensor):
                raise ConfigError(f"HF weights have a non-zero '{hf_key}': set model.bias true")
            continue
        tensor = tensor.t() if transpose else tensor
        for key, part in zip(ours, tensor.split([shapes[key][0] for key in ours], dim=0)):
            out[key] = part.contiguous()
    return out


def add_rule(rules: list[Rule], ours: list[str], hf: str, transpose: bool = False, has_bias: bool = True) -> None:
    """Append the rules of a linear or norm: its weight and (``has_bias``) its bias."""
    rules.append(([f"{o}.weight" for o in ours], f"{hf}.weight", transpose))
    if has_bias:
        rules.append(([f"{o}.bias" for o in ours], f"{hf}.bias", False))


def rule_mapping(model_type: str, class_name: str, rules: Callable[[ModelConfig], list[Rule]],
                 config_to_hf: Callable[[ModelConfig, dict[str, Optional[int]]], Any],
                 config_from_hf: Callable[[Any], ModelConfig], bases: Optional[Mapping[str, str]] = None) -> HFMapping:
    """The `HFMapping` of a decoder family (one head, causal_lm) mapped by ``rules(cfg)``;
    ``bases``: its headless HF classes (see `HFMapping`); the LM head is the only head tensor."""
    return HFMapping(
        model_type=model_type, classes={"causal_lm": class_name}, config_to_hf=config_to_hf,
        config_from_hf=config_from_hf, bases=dict(bases or {}),
        to_hf_state_dict=lambda state_dict, cfg: rules_to_hf(state_dict, rules(cfg)),
        from_hf_state_dict=lambda hf_state, cfg, head: rules_from_hf(hf_state, rules(cfg), cfg, head))


# --------------------------------------------------------------------------- shared config checks


def plain_rope_theta(config: Any) -> float:
    """The RoPE base of an HF config; ConfigError for any RoPE scaling (not implemented here)."""
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ConfigError(f"RoPE scaling '{rope.get('rope_type', rope.get('type'))}' is not supported: "
                          "only plain RoPE")
    return float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def check_head_dim(config: Any, name: str) -> None:
    """HF configs with a head width other than hidden_size / heads are refused (ours derive it)."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if head_dim * config.num_attention_heads != config.hidden_size:
        raise ConfigError(f"HF {name} with head_dim * num_attention_heads != hidden_size is not supported")


def check_no_sliding_window(cfg: ModelConfig) -> None:
    """For the HF architectures without sliding-window attention."""
    if cfg.sliding_window:
        raise ConfigError(f"HF {cfg.family} has no sliding-window attention: set model.sliding_window to 0 "
                          "or use model.family mistral")


def given_tokens(tokens: dict[str, Optional[int]]) -> dict[str, int]:
    """The special token ids that were given (HF configs that reject None)."""
    return {key: value for key, value in tokens.items() if value is not None}


def __getattr__(name: str) -> Any:
    """``HF_MODEL_CLASSES``: each family's HF class of its pretraining head, from the registry."""
    if name == "HF_MODEL_CLASSES":
        return {family.name: family.hf.classes[family.heads[0]] for family in families().values()
                if family.hf is not None}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
