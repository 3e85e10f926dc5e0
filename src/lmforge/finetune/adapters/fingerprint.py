"""A fingerprint of the frozen base model an adapter was trained on, so that adapters loaded onto
another base (other shapes, or the same shapes with other weights) fail with one clear line
instead of computing nonsense.

The fingerprint hashes the model's state dict (parameters and buffers, NF4 codes and scales
included) under unwrapped names (``x.base.weight`` counts as ``x.weight``): name, dtype, shape
and bytes, in name order. Once adapters are applied, the adapters and the modules trained beside
them (``train_modules``: what requires grad) are left out; so a model without train_modules has
the same fingerprint before and after `apply_adapter`, and one with them should be fingerprinted
after it, as it is trained. An NF4 base hashes its codes, so a QLoRA adapter's base fingerprint
differs from the same model's unquantised one.
"""

from __future__ import annotations

import hashlib
from typing import Optional

import torch
from torch import nn

from lmforge.errors import CheckpointError
from lmforge.finetune.adapters.lora import base_names, lora_modules


def _frozen_state(model: nn.Module) -> dict[str, torch.Tensor]:
    adapted = bool(lora_modules(model))
    trained = {name for name, param in model.named_parameters() if param.requires_grad and adapted}
    names = base_names(model)
    return {names[name]: tensor for name, tensor in model.state_dict().items()
            if name not in trained and ".lora_" not in name}


def base_fingerprint(model: nn.Module) -> str:
    """``sha256:<hex>`` over the frozen base tensors' names, dtypes, shapes and contents."""
    digest = hashlib.sha256()
    for name, tensor in sorted(_frozen_state(model).items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        flat = tensor.detach().to("cpu").reshape(-1).contiguous()
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return "sha256:" + digest.hexdigest()


def check_base_fingerprint(model: nn.Module, expected: Optional[str], where: str = "the adapter") -> None:
    """CheckpointError when ``model``'s base is not the one ``expected`` was taken from."""
    if expected and base_fingerprint(model) != expected:
        raise CheckpointError(f"{where} was trained on another base model (base fingerprint differs): load it onto "
                              "the model it was trained from, with the same quantize_base setting")
