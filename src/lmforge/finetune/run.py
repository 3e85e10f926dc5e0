"""`lmforge finetune`: the training loop of `lmforge pretrain`, started from a pretrained model.

Fine-tuning is pretraining's loop with three differences, all applied in the set-up
(`lmforge.train.setup.build_training`) so the loop itself stays one:

- the model comes from ``train.init_from`` (an lmforge checkpoint or an HF directory): its
  config, its weights and, when ``train.tokenizer_dir`` is empty, its tokenizer; a task head
  the source lacks (a classifier on a masked-LM or headless base) starts from its own init;
- the task is usually a fine-tuning one (`lmforge tasks`: sft, sequence_classification,
  token_classification, seq2seq) whose JSONL data its options name, or ``causal_lm`` on new
  shards for continued pretraining (domain adaptation);
- parts of the model can stay fixed (``optim.freeze``), learning rates can decay with depth
  (``optim.layer_lr_decay``, ELECTRA/BEiT's LLRD), or only an adapter trains (``adapter``:
  LoRA, QLoRA with the base in NF4); an adapter run's checkpoints hold only the adapter and
  the path and fingerprint of the base they apply to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from lmforge.config import FinetuneConfig
from lmforge.train.loop import StepHook, pretrain

MERGED_DIR = "merged"


def finetune(cfg: FinetuneConfig, on_step: Optional[StepHook] = None) -> dict[str, Any]:
    """Run the fine-tuning ``cfg`` describes; returns the summary written to ``summary.json``
    (with ``merged_checkpoint`` when ``adapter.save_merged`` wrote one)."""
    summary = pretrain(cfg, on_step)
    if summary and cfg.adapter.name and cfg.adapter.save_merged:
        summary["merged_checkpoint"] = str(write_merged(Path(summary["checkpoint"]), Path(cfg.train.run_dir)))
    return summary


def write_merged(adapter_checkpoint: Path, run_dir: Path) -> Path:
    """A full checkpoint of the adapter merged into its base (``RUN_DIR/merged/step_N``): loads
    with `lmforge evaluate`, `generate` and `convert --to hf` like any other."""
    from lmforge.finetune.adapters import remove_adapters
    from lmforge.train import checkpoint as ckpt

    model, tokenizer, ckpt_dir = ckpt.load_checkpoint(adapter_checkpoint)
    info = ckpt.read_checkpoint_info(ckpt_dir)
    remove_adapters(model, merge=True)  # W + s·BA in place, the base modules back under their own names
    state = {"optimizer": {}, "scaler": {}, "sampler": {}}
    return ckpt.save_checkpoint(run_dir / MERGED_DIR, info.step, model, info.model, tokenizer, state, keep_last=1,
                                head=info.head.name, task=None if info.task is None else
                                {"name": info.task.name, "options": info.task.options},
                                training=info.training, id2label=info.head.labels())
