"""Loading an adapter checkpoint: its base from ``base.path``, the adapter with its saved options,
the base's fingerprint checked, then ``adapter.safetensors`` (`lmforge.train.checkpoint.load_checkpoint`
calls this for a checkpoint whose ``adapters`` section is set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lmforge.config import AdapterConfig, build_config
from lmforge.errors import CheckpointError
from lmforge.finetune.adapters import check_base_fingerprint
from lmforge.train import checkpoint as ckpt
from lmforge.train.init_from import InitSource, read_init_source, source_tokenizer
from lmforge.train.setup import apply_adapter_config


def read_base_source(path: str, adapter_checkpoint: Path) -> InitSource:
    """The base an adapter checkpoint names (with its own tokenizer); one CheckpointError line
    when it is gone."""
    if not path or not Path(path).is_dir():
        raise CheckpointError(f"adapter checkpoint '{adapter_checkpoint}' applies to the base '{path}', which is "
                              "not there: put the base model back at that path (or edit base.path in its config.json)")
    return read_init_source(path, source_tokenizer(path), path)


def load_adapter_checkpoint(model: torch.nn.Module, ckpt_dir: Path, info: Any) -> None:
    """Fill ``model`` (built with the checkpoint's head) from the adapter checkpoint ``ckpt_dir``."""
    if len(info.adapters) != 1:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' stacks {len(info.adapters)} adapters; this version applies one")
    base_path = str(info.base.get("path", ""))
    read_base_source(base_path, ckpt_dir).load_into(model)
    adapter = build_config(AdapterConfig, {"name": info.adapters[0].get("name", ""),
                                           "options": info.adapters[0].get("options", {})})
    applied = apply_adapter_config(model, adapter)
    expected = info.base.get("fingerprint")
    if expected and applied.base_fingerprint != expected:
        check_base_fingerprint(model, expected, f"adapter checkpoint '{ckpt_dir}' (base '{base_path}')")
    ckpt.load_adapter_weights(model, ckpt_dir)
