"""``train.init_from``: start a run from another model's weights (fine-tuning, continued pretraining).

The source is an lmforge checkpoint (or a run directory: its newest checkpoint) or an HF model
directory (``config.json`` with a ``model_type`` + safetensors). Only the weights come over:
the optimiser, schedule, data position and step counters start fresh at step 0. The model
config is the source's; a ``model.*`` option that contradicts it is refused (one line), since
the weights could not be loaded into another shape. A checkpoint in the run's own directory
takes precedence: a resumed run goes on from where it stopped, not from the source again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from lmforge.config import ModelConfig
from lmforge.errors import CheckpointError, ConfigError
from lmforge.train import checkpoint as ckpt


@dataclass(frozen=True)
class InitSource:
    """Weights to start from: an lmforge checkpoint directory, or an HF directory's state dict."""

    path: Path
    model_cfg: ModelConfig
    ckpt_dir: Optional[Path] = None  # lmforge checkpoint
    state_dict: Optional[dict[str, torch.Tensor]] = None  # HF weights in lmforge names

    def load_into(self, model: torch.nn.Module) -> None:
        if self.ckpt_dir is not None:
            ckpt.load_weights(model, self.ckpt_dir)
            return
        missing, unexpected = model.load_state_dict(self.state_dict, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"train.init_from '{self.path}' does not fit the model it describes "
                                  f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")


def _is_hf_dir(path: Path) -> bool:
    try:
        return "model_type" in json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def _read_hf(hf_dir: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """An HF directory's config and weights in lmforge names, in memory."""
    from lmforge.interop.convert import read_hf_model

    model_cfg, _head, state_dict = read_hf_model(hf_dir)
    return model_cfg, state_dict


def read_init_source(path: str, tokenizer: Any, tokenizer_dir: str) -> InitSource:
    """The source named by ``train.init_from``; an lmforge checkpoint must have been trained with
    the run's tokenizer (the embedding rows are its ids)."""
    from lmforge.tokenize import load_tokenizer

    source = Path(path)
    if not source.is_dir():
        raise ConfigError(f"config key 'train.init_from': '{path}' is not a directory: pass an lmforge checkpoint "
                          "or run directory, or an HF model directory (config.json + safetensors)")
    if _is_hf_dir(source):
        model_cfg, state_dict = _read_hf(source)
        return InitSource(source, model_cfg, state_dict=state_dict)
    ckpt_dir = ckpt.resolve_checkpoint(source)
    if load_tokenizer(ckpt_dir / ckpt.TOKENIZER_DIR).fingerprint() != tokenizer.fingerprint():
        raise CheckpointError(f"train.init_from '{ckpt_dir}' was trained with another tokenizer than "
                              f"{tokenizer_dir}: pass that checkpoint's tokenizer (its tokenizer/ directory) "
                              "and shards encoded with it")
    return InitSource(source, ckpt.read_model_config(ckpt_dir), ckpt_dir=ckpt_dir)


def source_model_config(requested: ModelConfig, source: InitSource) -> ModelConfig:
    """The source's model config; ConfigError if a ``model.*`` option the run sets (one that is not
    at its default) says otherwise."""
    default = ModelConfig()
    clashes = [f"model.{f.name} {getattr(requested, f.name)!r} (the source has {getattr(source.model_cfg, f.name)!r})"
               for f in dataclasses.fields(ModelConfig)
               if getattr(requested, f.name) != getattr(default, f.name)
               and getattr(requested, f.name) != getattr(source.model_cfg, f.name)]
    if clashes:
        raise ConfigError(f"train.init_from '{source.path}' fixes the model config, but {'; '.join(clashes)}: "
                          "drop those model options")
    return source.model_cfg
