"""Loading a source's weights into a model of the same family with any head: the trunk/head rule.

Every trunk tensor (what all heads of the family share) must be in the source with the model's
shape; head tensors (`HFMapping.is_head_key` of the family: BERT's pooler, MLM head and
classifier, a decoder's output, T5's decoder and output) the source lacks keep the model's own
initialisation, and source tensors the model has no place for are dropped. ``train.init_from``
(`lmforge.train.init_from`) and the import of a headless HF model (`lmforge.interop.convert`)
both load this way; the `LoadReport` says what was new and what was dropped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import torch

from lmforge.errors import CheckpointError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadReport:
    """What ``load_into`` did beside loading: tensors the model kept from its own init
    (``new``) and source tensors it had no place for (``dropped``)."""

    new: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()

    def summary(self) -> str:
        """One short line: modules rather than every tensor (``decoder_layers.* (x26)``)."""
        return f"new: [{', '.join(_modules(self.new))}], dropped: [{', '.join(_modules(self.dropped))}]"


def _modules(keys: tuple[str, ...]) -> list[str]:
    """Keys grouped by module with layer numbers wildcarded, each with its tensor count."""
    groups: dict[str, int] = {}
    for key in keys:
        module = re.sub(r"\.\d+(\.|$)", r".*\1", key.rsplit(".", 1)[0] if "." in key else key)
        module = module.split(".*", 1)[0] + ".*" if ".*" in module else module
        groups[module] = groups.get(module, 0) + 1
    return [f"{name} (x{count})" if count > 1 else name for name, count in groups.items()]


def _head_key(model: torch.nn.Module) -> Any:
    """``is_head_key(key)`` of the model's family (every key but the trunk's, see the module doc)."""
    from lmforge.models.registry import get_family

    mapping = get_family(model.config.family).hf
    if mapping is None:
        return lambda key: key.startswith("output.")
    return mapping.is_head_key


def load_partial(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> LoadReport:
    """Load ``state_dict`` into ``model`` by the trunk/head rule of the module docstring.

    A trunk tensor missing from the source, or any tensor of another shape than the model's
    (a head's too: a classifier with another number of labels is dropped and new), is handled
    as its name says; only a missing or misshapen trunk tensor is an error (CheckpointError).
    """
    is_head = _head_key(model)
    own = model.state_dict()
    # A tied tensor (an LM head tied to the embedding) is loaded when its twin is.
    twin_of: dict[int, list[str]] = {}
    for key, tensor in own.items():
        twin_of.setdefault(tensor.data_ptr(), []).append(key)
    loadable: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, tensor in state_dict.items():
        if key in own and tuple(own[key].shape) == tuple(tensor.shape):
            loadable[key] = tensor
        elif key in own and not is_head(key):
            raise CheckpointError(f"train.init_from '{source}': tensor '{key}' has shape {tuple(tensor.shape)}, the "
                                  f"model's is {tuple(own[key].shape)}: the source is another model size")
        else:
            dropped.append(key)
    covered = set(loadable)
    for key in list(covered):
        covered.update(twin_of.get(own[key].data_ptr(), ()))
    missing = [key for key in own if key not in covered]
    trunk = [key for key in missing if not is_head(key)]
    if trunk:
        raise CheckpointError(f"train.init_from '{source}' lacks {len(trunk)} trunk tensor(s) of the model "
                              f"(first: {', '.join(trunk[:3])}): it is another model family or architecture")
    model.load_state_dict(loadable, strict=False)
    report = LoadReport(tuple(missing), tuple(dropped))
    if missing or dropped:
        log.info("train.init_from %s: %s", source, report.summary())
    return report
