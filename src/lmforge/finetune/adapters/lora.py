"""LoRA (Hu et al. 2021, arXiv 2106.09685) and its QLoRA base (Dettmers et al. 2023).

A wrapped linear computes ``y = base(x) + s·B(A(dropout(x)))`` with A (rank x in) drawn like
an `nn.Linear` weight (Kaiming-uniform, a = √5) and B (out x rank) zeros, so the model is
unchanged until B moves; s = alpha / rank, or alpha / √rank with rsLoRA (Kalajdzievski 2023,
arXiv 2312.03732, which keeps the update's scale stable as the rank grows). The base module is
kept as the submodule ``base`` and called as a module, so its own forward (an `NF4Linear`'s
dequantisation, a hook) still runs. `fast_decoding` swaps only exact `nn.Linear`s: a
`LoRALinear` is left in place (its ``base``, ``lora_A`` and ``lora_B`` may be swapped for
frozen copies inside it, which computes the same).

Targets follow PEFT's ``target_modules``: a target without wildcards matches a module whose
name equals it or ends with ``.`` + it ("q_proj", "attn.q_proj"); a target with ``*?[`` is an
fnmatch pattern over the full module name ("layers.1.*"). The output head is never wrapped:
lmforge's `LMHead` computes its loss fused with the logits, may share its weight with the
token embedding (then a LoRA on it would change the embedding's meaning too) and PEFT's
export of a head adapter differs; a target naming it is a ConfigError (``train_modules:
[output]`` trains it fully instead). A glob that also covers it simply leaves it out.

Merging (W += s·BA) is refused on an NF4 base: the sum is not an NF4 matrix, and
re-quantising it would lose most of the adapter. Export the adapter (`export_peft`) or apply
it to the unquantised base instead.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lmforge.config import at_least, below_one, option, positive
from lmforge.errors import CheckpointError, ConfigError
from lmforge.finetune.adapters.nf4 import NF4Linear, quantize_base
from lmforge.finetune.adapters.registry import register_adapter


@dataclass
class LoraOptions:
    rank: int = option(8, "rank r of the update B·A", at_least(1))
    alpha: float = option(8.0, "scale numerator: the update is multiplied by alpha/r (alpha/sqrt(r) with rslora)",
                          positive)
    dropout: float = option(0.0, "dropout on the adapter's input (training only)", below_one)
    targets: list[str] = option(["q_proj", "v_proj"], "modules to wrap: a name or dotted suffix of a module "
                                                      "name (PEFT target_modules), or an fnmatch pattern over "
                                                      "the full name")
    rslora: bool = option(False, "rank-stabilised scale alpha/sqrt(r) (Kalajdzievski 2023)")
    train_modules: list[str] = option([], "modules trained fully beside the adapters (PEFT modules_to_save), "
                                          "e.g. [classifier]; same matching as targets")
    quantize_base: Literal["none", "nf4"] = option("none", "nf4: freeze the block linears in 4-bit NormalFloat "
                                                          "(QLoRA) before wrapping")
    double_quant: bool = option(False, "with nf4: quantise the block scales to 8 bits too (QLoRA)")
    quant_block_size: int = option(64, "with nf4: values per absmax block", at_least(2))

    def validate(self, prefix: str) -> None:
        if self.quant_block_size % 2:
            raise ConfigError(f"config key '{prefix}quant_block_size': expected an even integer, "
                              f"got {self.quant_block_size} (two 4-bit codes are packed per byte)")
        if not self.targets:
            raise ConfigError(f"config key '{prefix}targets': name at least one module to wrap (e.g. [q_proj, v_proj])")

    def scale(self) -> float:
        return self.alpha / (math.sqrt(self.rank) if self.rslora else self.rank)


class LoRALinear(nn.Module):
    """``base(x) + scale·lora_B(lora_A(dropout(x)))`` around a linear-like ``base`` (an
    `nn.Linear` or an `NF4Linear`); `merge` folds the update into an `nn.Linear` base."""

    def __init__(self, base: nn.Module, rank: int, scale: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.base = base
        self.in_features, self.out_features = base.in_features, base.out_features
        device = base.codes.device if isinstance(base, NF4Linear) else base.weight.device
        dtype = torch.float32 if isinstance(base, NF4Linear) else base.weight.dtype
        self.lora_A = nn.Linear(self.in_features, rank, bias=False, device=device, dtype=dtype)  # Kaiming-uniform a=√5
        self.lora_B = nn.Linear(rank, self.out_features, bias=False, device=device, dtype=dtype)
        nn.init.zeros_(self.lora_B.weight)
        self.rank, self.scale = rank, scale
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """s·BA, the update in the base weight's layout (out x in)."""
        return self.scale * (self.lora_B.weight @ self.lora_A.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        return y + self.scale * self.lora_B(self.lora_A(self.dropout(x))).to(y.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        if not isinstance(self.base, nn.Linear):
            raise ConfigError("cannot merge a LoRA adapter into an NF4-quantised base (the sum is not NF4): "
                              "export the adapter with export_peft, or apply it to the unquantised model")
        self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scale={self.scale:g}, merged={self.merged}"


# --------------------------------------------------------------------------- matching


def _is_pattern(target: str) -> bool:
    return any(ch in target for ch in "*?[")


def matches(name: str, target: str) -> bool:
    """PEFT's target_modules rule for a plain name (equal, or a dotted suffix); fnmatch over the
    full name for a pattern."""
    if _is_pattern(target):
        return fnmatch.fnmatchcase(name, target)
    return name == target or name.endswith("." + target)


def _head_names(model: nn.Module) -> set[str]:
    from lmforge.models.heads import LMHead

    return {name for name, module in model.named_modules() if isinstance(module, LMHead)}


def _examples(names: list[str], count: int = 6) -> str:
    shown = ", ".join(names[:count])
    return shown + (f", ... ({len(names)} in all)" if len(names) > count else "")


def linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, (nn.Linear, NF4Linear))
            and ".lora_" not in f".{name}"]


def _select(model: nn.Module, targets: list[str], key: str) -> list[str]:
    """The linear modules ``targets`` match (head left out; a target naming it explicitly refused)."""
    heads = _head_names(model)
    linears = linear_names(model)
    for target in targets:
        named = [h for h in heads if not _is_pattern(target) and matches(h, target)]
        if named:
            raise ConfigError(f"config key '{key}': {target!r} names the output head '{named[0]}', which LoRA does "
                              "not wrap (it owns the fused loss and may be tied to the embeddings): train it "
                              "fully with train_modules instead")
    chosen = [name for name in linears if name not in heads and any(matches(name, t) for t in targets)]
    if not chosen:
        raise ConfigError(f"config key '{key}': {', '.join(targets)} match no linear module of this model; "
                          f"its linears are named like {_examples([n for n in linears if n not in heads])}")
    return chosen


def _modules_matching(model: nn.Module, patterns: list[str], key: str) -> list[str]:
    names = [name for name, _ in model.named_modules() if name]
    chosen = [name for name in names if any(matches(name, p) for p in patterns)]
    if patterns and not chosen:
        tops = [name for name, _ in model.named_children()]
        raise ConfigError(f"config key '{key}': {', '.join(patterns)} match no module of this model; its top-level "
                          f"modules are {_examples(tops)}")
    return chosen


def _check_not_shared(model: nn.Module, chosen: list[str]) -> None:
    """A wrapped weight must belong to that module only (a tied weight would change elsewhere too)."""
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        for pname, param in module.named_parameters(recurse=False):
            owners.setdefault(id(param), []).append(f"{name}.{pname}")
    for name in chosen:
        module = model.get_submodule(name)
        weight = getattr(module, "weight", None)
        if weight is not None and len(set(owners.get(id(weight), []))) > 1:
            raise ConfigError(f"config key 'adapter.options.targets': {name}'s weight is shared with "
                              f"{[o for o in owners[id(weight)] if not o.startswith(name + '.')][0]}: "
                              "leave it out of the targets")


# --------------------------------------------------------------------------- applying


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def apply_lora(model: nn.Module, options: LoraOptions) -> list[str]:
    """Wrap ``options.targets`` in `LoRALinear` (after NF4-quantising the block linears when
    ``quantize_base`` is nf4), then freeze everything but the adapters and ``train_modules``.
    Returns the wrapped module names."""
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ConfigError("the model already has LoRA adapters: merge or remove them before applying new ones")
    key = "adapter.options.targets"
    chosen = _select(model, list(options.targets), key)
    _check_not_shared(model, chosen)
    trained = _modules_matching(model, list(options.train_modules), "adapter.options.train_modules")
    overlap = [n for n in chosen if any(n == t or n.startswith(t + ".") for t in trained)]
    if overlap:
        raise ConfigError(f"config key 'adapter.options.train_modules': {overlap[0]} is also a LoRA target: "
                          "a module is either adapted or trained fully")
    if options.quantize_base == "nf4":
        skip = frozenset(n for n, _ in model.named_modules() if any(n == t or n.startswith(t + ".") for t in trained))
        quantize_base(model, options.quant_block_size, options.double_quant, skip=skip)
    for param in model.parameters():
        param.requires_grad_(False)
    for name in chosen:
        _set(model, name, LoRALinear(model.get_submodule(name), options.rank, options.scale(), options.dropout))
    for name in trained:
        for param in model.get_submodule(name).parameters():
            param.requires_grad_(True)
    return chosen


@register_adapter("lora", LoraOptions, "low-rank adapters (LoRA, rsLoRA) on chosen linears, optionally on an NF4 "
                                       "base (QLoRA); only the adapters (+ train_modules) are trained and saved")
class LoraAdapter:
    @staticmethod
    def apply(model: nn.Module, options: LoraOptions) -> list[str]:
        return apply_lora(model, options)


# --------------------------------------------------------------------------- state, merge


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: module for name, module in model.named_modules() if isinstance(module, LoRALinear)}


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained tensors: every parameter that requires grad (the adapters and the modules
    trained fully), by their lmforge names (``layers.0.attn.q_proj.lora_A.weight``...)."""
    return {name: param.detach().clone() for name, param in model.named_parameters() if param.requires_grad}


def load_adapter_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` (from `adapter_state_dict`) into ``model`` (adapters applied the same way);
    CheckpointError for a missing or unknown name or a shape that differs (a different base)."""
    params = {name: param for name, param in model.named_parameters() if param.requires_grad}
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise CheckpointError(f"adapter weights name {unknown[0]!r}, which this model has no trainable tensor for: "
                              "apply the same adapter options (targets, train_modules) to the same base model")
    missing = sorted(set(params) - set(state))
    if missing:
        raise CheckpointError(f"adapter weights lack {missing[0]!r}: they were saved with other adapter options "
                              "(targets, rank, train_modules)")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(params[name].shape):
            raise CheckpointError(f"adapter tensor {name} has shape {tuple(tensor.shape)}, this model's is "
                                  f"{tuple(params[name].shape)}: the adapter was trained on another base model "
                                  "or with another rank")
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)


def merge_adapters(model: nn.Module) -> int:
    """Fold every adapter into its base weight (W += s·BA); the forward then skips the adapter
    path. Returns how many were merged."""
    modules = lora_modules(model)
    for module in modules.values():
        module.merge()
    return len(modules)


def unmerge_adapters(model: nn.Module) -> int:
    """Undo `merge_adapters` (W -= s·BA)."""
    modules = lora_modules(model)
    for module in modules.values():
        module.unmerge()
    return len(modules)


def remove_adapters(model: nn.Module, merge: bool = True) -> int:
    """Put each wrapped module's base back in its place (merged first when ``merge``): the
    model's parameter names are then the original ones, e.g. for `lmforge convert`."""
    modules = lora_modules(model)
    for name, module in modules.items():
        if merge:
            module.merge()
        else:
            module.unmerge()
        _set(model, name, module.base)
    return len(modules)


def base_names(model: nn.Module) -> dict[str, str]:
    """Our tensor name as it is now -> its name in the unwrapped model (``x.base.weight`` ->
    ``x.weight``)."""
    wrapped = lora_modules(model)
    out = {}
    for name in model.state_dict():
        for prefix in wrapped:
            if name.startswith(prefix + ".base."):
                out[name] = prefix + "." + name[len(prefix) + len(".base."):]
                break
        else:
            out[name] = name
    return out
