"""LoRA adapters in the PEFT format: ``adapter_config.json`` + ``adapter_model.safetensors``,
loadable with ``peft.PeftModel.from_pretrained(hf_base, dir)`` onto the HF export of the base
model (`lmforge convert --to hf`), giving the same logits.

PEFT names a tensor ``base_model.model.<HF module>.lora_A.weight`` (``lora_B``; a module
trained fully, PEFT's ``modules_to_save``, as ``base_model.model.<HF module>.weight``). Our
module names are turned into HF ones through the family's HF weight mapping
(`lmforge.interop.hf`), by probing it: every tensor of the model's state dict is zeros except
the targets', each filled with its own tag (its first row differing from the rest), and the
mapped HF tensor holding exactly that tag, in the same shape, is the target's HF weight. A
target the mapping fuses with others into one HF tensor (GPT-2's ``c_attn``, Falcon's
``query_key_value``) or stores transposed (GPT-2's Conv1D) has no PEFT LoRA counterpart and is
refused with one ConfigError naming which targets export. The probe builds one zero state dict
the size of the model (float32), once per export.

``target_modules`` in the config lists the full HF module names, so PEFT wraps exactly the
modules we wrapped. An NF4 (QLoRA) adapter exports the same way: PEFT applies it to the
unquantised HF base, whose logits differ from ours by the NF4 rounding of the base.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import CheckpointError, ConfigError
from lmforge.finetune.adapters.lora import (LoRALinear, LoraOptions, linear_names, apply_lora,
                                            load_adapter_state_dict, lora_modules)

CONFIG_NAME, WEIGHTS_NAME = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."
TASK_TYPES = {"causal_lm": "CAUSAL_LM", "sequence_classification": "SEQ_CLS", "token_classification": "TOKEN_CLS",
              "seq2seq_lm": "SEQ_2_SEQ_LM"}


def _module_names(model: nn.Module) -> set[str]:
    """Module names of the unwrapped model (a LoRALinear counts as its base)."""
    wrapped = lora_modules(model)
    names = set()
    for name, _ in model.named_modules():
        owner = next((w for w in wrapped if name.startswith(w + ".")), None)
        if owner is None:
            names.add(name)
    return names


def model_head(model: nn.Module, cfg: ModelConfig) -> str:
    """Which of its family's heads ``model`` (adapters applied or not) is."""
    from lmforge.models.registry import get_family

    family = get_family(cfg.family)
    ours = _module_names(model)
    for head in family.heads:
        try:
            with torch.device("meta"):
                if {name for name, _ in family.build(cfg, head).named_modules()} == ours:
                    return head
        except ConfigError:
            continue
    raise ConfigError(f"the model is none of the {family.name} heads ({', '.join(family.heads)}) for its config")


def hf_module_names(cfg: ModelConfig, head: str, modules: list[str]) -> dict[str, str]:
    """Our module name -> the HF module whose ``.weight`` is exactly ours (same shape, not
    fused, not transposed); modules without one are left out."""
    from lmforge.interop.hf import mapping_of, our_shapes
    from lmforge.models.presets import resolve_model_config

    cfg = resolve_model_config(cfg)
    shapes = our_shapes(cfg, head)
    probe = {key: torch.zeros(shape) for key, shape in shapes.items()}
    tags = {}
    for index, module in enumerate(modules):
        key = f"{module}.weight"
        if key not in probe:
            continue
        tag = torch.full(shapes[key], float(2 * index + 2))
        tag[0] += 1.0  # the first row differs: a transposed copy no longer equals the tag
        probe[key] = tags[module] = tag
    hf = mapping_of(cfg).to_hf_state_dict(probe, cfg)
    found: dict[str, str] = {}
    for hf_key, tensor in hf.items():
        if not hf_key.endswith(".weight"):
            continue
        for module, tag in tags.items():
            if tensor.shape == tag.shape and torch.equal(tensor, tag):
                found.setdefault(module, hf_key[: -len(".weight")])
    return found


def _options_of(model: nn.Module) -> tuple[int, float]:
    modules = list(lora_modules(model).values())
    ranks, scales = {m.rank for m in modules}, {m.scale for m in modules}
    if len(ranks) != 1 or len(scales) != 1:
        raise ConfigError("the adapters differ in rank or scale across modules: PEFT's format takes one r and alpha")
    return ranks.pop(), scales.pop()


def export_peft(model: nn.Module, model_cfg: ModelConfig, options: LoraOptions, out_dir: str | os.PathLike,
                base_model_name_or_path: str = "", head: Optional[str] = None) -> Path:
    """Write ``model``'s LoRA adapters (and ``train_modules``) in PEFT's format to ``out_dir``;
    returns it. ConfigError when a target has no one-to-one HF weight."""
    from safetensors.torch import save_file

    wrapped = lora_modules(model)
    if not wrapped:
        raise ConfigError("the model has no LoRA adapters to export: apply_adapter first")
    if any(m.merged for m in wrapped.values()):
        raise ConfigError("the adapters are merged into the base: unmerge_adapters before export_peft")
    rank, scale = _options_of(model)
    head = head or model_head(model, model_cfg)
    trained = sorted({name.rsplit(".", 1)[0] for name, p in model.named_parameters()
                      if p.requires_grad and ".lora_" not in name})
    names = hf_module_names(model_cfg, head, list(wrapped) + trained)
    missing = [name for name in list(wrapped) + trained if name not in names]
    if missing:
        linears = sorted(name.removesuffix(".base") for name in linear_names(model))
        exportable = sorted({n.split(".", 2)[-1] for n in hf_module_names(model_cfg, head, linears)
                             if n.startswith("layers.")})
        hint = (f"target only {', '.join(exportable)} to export" if exportable
                else f"no {model_cfg.family} block linear can be exported")
        raise ConfigError(f"{missing[0]} has no single HF weight of its own in {model_cfg.family}'s HF layout "
                          f"(fused or transposed there), so PEFT cannot load a LoRA on it: {hint}")
    tensors: dict[str, torch.Tensor] = {}
    for name, module in wrapped.items():
        tensors[f"{PREFIX}{names[name]}.lora_A.weight"] = module.lora_A.weight.detach().float().contiguous()
        tensors[f"{PREFIX}{names[name]}.lora_B.weight"] = module.lora_B.weight.detach().float().contiguous()
    modules_to_save = []
    for pname, param in model.named_parameters():
        if param.requires_grad and ".lora_" not in pname:
            module, leaf = pname.rsplit(".", 1)
            tensors[f"{PREFIX}{names[module]}.{leaf}"] = param.detach().float().contiguous()
            modules_to_save.append(names[module])
    alpha = scale * (rank ** 0.5 if options.rslora else rank)
    config: dict[str, Any] = {
        "peft_type": "LORA", "task_type": TASK_TYPES.get(head), "base_model_name_or_path": base_model_name_or_path,
        "r": rank, "lora_alpha": alpha, "lora_dropout": options.dropout, "use_rslora": options.rslora,
        "target_modules": sorted(names[n] for n in wrapped), "bias": "none", "fan_in_fan_out": False,
        "modules_to_save": sorted(set(modules_to_save)) or None, "init_lora_weights": True, "inference_mode": True,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def import_peft(model: nn.Module, model_cfg: ModelConfig, adapter_dir: str | os.PathLike,
                head: Optional[str] = None) -> list[str]:
    """Apply the PEFT LoRA adapter in ``adapter_dir`` to ``model`` (unadapted, the base it was
    trained on) and load its weights; returns the wrapped module names. CheckpointError for a
    directory that is not a PEFT LoRA adapter or names modules this model lacks."""
    from safetensors.torch import load_file

    path = Path(adapter_dir)
    if not (path / CONFIG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"{path} is not a PEFT adapter directory: it needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    config = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA" or config.get("bias", "none") != "none" or config.get("fan_in_fan_out"):
        raise CheckpointError(f"{path}: only PEFT LoRA adapters with bias 'none' and fan_in_fan_out false load here "
                              f"(this one: peft_type {config.get('peft_type')}, bias {config.get('bias')})")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise CheckpointError(f"{path}: per-module rank_pattern/alpha_pattern are not supported")
    head = head or model_head(model, model_cfg)
    ours = sorted(name for name, module in model.named_modules() if isinstance(module, (nn.Linear,)))
    to_ours = {hf: name for name, hf in hf_module_names(model_cfg, head, ours).items()}
    state = load_file(str(path / WEIGHTS_NAME))
    targets, trained, tensors = set(), set(), {}
    for key, tensor in state.items():
        rest = key[len(PREFIX):] if key.startswith(PREFIX) else key
        for part in (".lora_A.weight", ".lora_B.weight"):
            if rest.endswith(part) and rest[: -len(part)] in to_ours:
                targets.add(to_ours[rest[: -len(part)]])
                tensors[f"{to_ours[rest[: -len(part)]]}{part}"] = tensor
                break
        else:
            module, _, leaf = rest.rpartition(".")
            if module not in to_ours:
                raise CheckpointError(f"{path}: adapter tensor {key} names a module this {model_cfg.family} model "
                                      "does not have: the adapter was trained on another base model")
            trained.add(to_ours[module])
            tensors[f"{to_ours[module]}.{leaf}"] = tensor
    options = LoraOptions(rank=int(config["r"]), alpha=float(config["lora_alpha"]),
                          dropout=float(config.get("lora_dropout") or 0.0), targets=sorted(targets),
                          rslora=bool(config.get("use_rslora")), train_modules=sorted(trained))
    wrapped = apply_lora(model, options)
    load_adapter_state_dict(model, tensors)
    assert all(isinstance(model.get_submodule(n), LoRALinear) for n in wrapped)
    return wrapped
