"""``train.init_from``: start a run from another model's weights (fine-tuning, continued pretraining).

The source is an lmforge checkpoint (or a run directory: its newest checkpoint) or an HF model
directory (``config.json`` with a ``model_type`` + safetensors; half-precision weights are
read as fp32). Only the weights come over: the optimiser, schedule, data position and step
counters start fresh at step 0. The model config is the source's; a ``model.*`` option that
contradicts it is refused (one line), since the weights could not be loaded into another
shape. A checkpoint in the run's own directory takes precedence: a resumed run goes on from
where it stopped, not from the source again.

The source may hold another head than the run trains, or none (an HF ``BertModel``,
``LlamaModel``, ``T5EncoderModel``: head ``BASE_HEAD``). ``InitSource.load_into`` then loads
every trunk tensor (a missing one is a CheckpointError), keeps the model's own init for head
tensors the source lacks (a classifier, a pooler, an untied LM head, T5's decoder under an
encoder), ignores source tensors the model lacks (an MLM head under a classifier, a pooler)
and reports both (`LoadReport`). Which keys are a head's is the family's
``HFMapping.head_prefixes``. This is the transfer-learning set-up of BERT (Devlin et al. 2019,
sec. 4): the pretrained encoder plus a freshly initialised task layer.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from lmforge.config import ModelConfig
from lmforge.errors import CheckpointError, ConfigError
from lmforge.models.partial_load import LoadReport, load_partial
from lmforge.train import checkpoint as ckpt


@dataclass(frozen=True)
class InitSource:
    """Weights to start from: an lmforge checkpoint directory, or an HF directory's state dict.

    ``head``: the source's head (``BASE_HEAD`` for an HF model saved without one);
    ``source_dtype``: the dtype the HF weights were saved in ("" for a checkpoint)."""

    path: Path
    model_cfg: ModelConfig
    ckpt_dir: Optional[Path] = None  # lmforge checkpoint
    state_dict: Optional[dict[str, torch.Tensor]] = None  # HF weights in lmforge names
    head: str = ""
    source_dtype: str = ""
    reports: list[LoadReport] = field(default_factory=list, compare=False)

    def load_into(self, model: torch.nn.Module) -> LoadReport:
        """Load the source's weights into ``model`` (any head of the source's family) by the
        trunk/head rule; returns (and logs) what was new and what was dropped."""
        if self.ckpt_dir is not None:
            state_dict = _checkpoint_weights(self.ckpt_dir)
        else:
            assert self.state_dict is not None
            state_dict = self.state_dict
        report = load_partial(model, state_dict, str(self.path))
        self.reports.append(report)
        return report


def _checkpoint_weights(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    """An lmforge checkpoint's weights under every name of its own model (tied tensors under
    each of their names, as safetensors keeps only one), loaded and checked by
    ``checkpoint.load_weights``."""
    from lmforge.models.registry import get_family

    info = ckpt.read_checkpoint_info(ckpt_dir)
    model = get_family(info.model.family).build(info.model, info.head.name)
    ckpt.load_weights(model, ckpt_dir)
    return model.state_dict()


def _is_hf_dir(path: Path) -> bool:
    try:
        return "model_type" in json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def source_directory(path: str | Path) -> Path:
    """``train.init_from`` as a directory; one ConfigError line when it is not one."""
    source = Path(path)
    if not source.is_dir():
        raise ConfigError(f"config key 'train.init_from': '{path}' is not a directory: pass an lmforge checkpoint "
                          "or run directory, or an HF model directory (config.json + safetensors)")
    return source


def source_tokenizer(init_from_path: str | Path) -> Any:
    """The tokenizer a ``train.init_from`` source was saved with: an lmforge checkpoint's
    ``tokenizer/``, or an HF directory's own tokenizer.json (kind "pretrained"; an lmforge
    export's tokenizer keeps its lmforge kind). One error line when it has none, or when the
    tokenizer has more ids than the model has embeddings."""
    from lmforge.tokenize import load_tokenizer

    path = source_directory(init_from_path)
    if _is_hf_dir(path):
        from lmforge.interop.convert import read_hf_source, read_hf_tokenizer

        tokenizer = read_hf_tokenizer(path)
        read_hf_source(path).check_vocab(tokenizer)
        return tokenizer
    return load_tokenizer(ckpt.resolve_checkpoint(path) / ckpt.TOKENIZER_DIR)


def read_init_source(path: str, tokenizer: Any, tokenizer_dir: str) -> InitSource:
    """The source named by ``train.init_from``; an lmforge checkpoint must have been trained with
    the run's tokenizer (the embedding rows are its ids)."""
    from lmforge.tokenize import load_tokenizer

    source = source_directory(path)
    if _is_hf_dir(source):
        from lmforge.interop.convert import read_hf_weights

        weights = read_hf_weights(source)
        return InitSource(source, weights.config, state_dict=weights.state_dict, head=weights.head,
                          source_dtype=weights.source_dtype)
    ckpt_dir = ckpt.resolve_checkpoint(source)
    if load_tokenizer(ckpt_dir / ckpt.TOKENIZER_DIR).fingerprint() != tokenizer.fingerprint():
        raise CheckpointError(f"train.init_from '{ckpt_dir}' was trained with another tokenizer than "
                              f"{tokenizer_dir or 'the run uses'}: pass that checkpoint's tokenizer (its tokenizer/ "
                              "directory) and shards encoded with it")
    info = ckpt.read_checkpoint_info(ckpt_dir)
    return InitSource(source, info.model, ckpt_dir=ckpt_dir, head=info.head.name)


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
