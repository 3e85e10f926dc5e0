"""`lmforge convert --to peft`: a LoRA checkpoint of `lmforge finetune` as a PEFT adapter directory.

The adapter checkpoint names its base (``base.path``); `peft.PeftModel.from_pretrained` loads the
written directory onto the HF export of that base (`lmforge convert --to hf BASE`) and computes
the same logits (tests/test_peft_export.py). An adapter checkpoint has no full weights, so
``--to hf`` refuses it with a pointer to ``adapter.save_merged`` (a merged full copy) or ``--to peft``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lmforge.errors import ConfigError
from lmforge.train import checkpoint as ckpt


def _adapter_info(source: str | Path) -> tuple[Path, ckpt.CheckpointInfo]:
    ckpt_dir = ckpt.resolve_checkpoint(source)
    return ckpt_dir, ckpt.read_checkpoint_info(ckpt_dir)


def refuse_adapter_checkpoint(source: str | Path) -> None:
    """ConfigError when ``source`` is an adapter checkpoint (it cannot be exported as a whole model)."""
    ckpt_dir, info = _adapter_info(source)
    if info.adapters:
        raise ConfigError(f"'{ckpt_dir}' is an adapter checkpoint (only the adapter's weights): export it with "
                          "--to peft, or export the merged copy `lmforge finetune --adapter.save_merged true` writes "
                          "(RUN_DIR/merged)")


def export_adapter_checkpoint(source: str | Path, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write the PEFT adapter of the LoRA checkpoint ``source`` (or a run directory's newest) to ``out_dir``."""
    from lmforge.finetune.adapters import adapter_options, adapter_spec, export_peft

    ckpt_dir, info = _adapter_info(source)
    if not info.adapters:
        raise ConfigError(f"'{ckpt_dir}' holds no adapter: --to peft exports the checkpoints of "
                          "`lmforge finetune --adapter.name lora`; use --to hf for a whole model")
    out = Path(out_dir)
    if not str(out_dir):
        raise ConfigError("no output directory given: set out_dir (--out_dir)")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"output directory '{out}' is not empty: choose another out_dir or set overwrite "
                              "(--overwrite true)")
        shutil.rmtree(out)
    spec = adapter_spec(info.adapters[0].get("name", ""))
    options = adapter_options(spec, info.adapters[0].get("options", {}))
    model, _, _ = ckpt.load_checkpoint(ckpt_dir)
    return export_peft(model, info.model, options, out, base_model_name_or_path=str(info.base.get("path", "")),
                       head=info.head.name)
