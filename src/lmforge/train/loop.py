"""The pretraining loop: set-up (`setup.py`), one optimiser step (`step.py`) and the loop around them.

One optimiser step = ``grad_accum`` micro-batches per process x ``world_size`` processes. The
task's data draws the *global* batch for each step and every rank takes its own slice, so one
process with ``grad_accum = k`` and k processes with ``grad_accum = 1`` see the same sequences
and compute the same update (tested). The data's position, with the model, optimiser, scaler
and RNG states, goes into every checkpoint (`state.py`), so a resumed run continues exactly
where the interrupted one stopped.

A run owns its directory: it holds `RUN_DIR/.lock` from start to end (`run_lock.py`), so
a second writer gets one error line naming the first. At start it removes the leftovers of
saves a kill interrupted, and on resume it drops the `metrics.jsonl` records of steps after
the checkpoint (they are trained and logged again). A checkpoint in the run directory is
resumed from before ``train.init_from`` is looked at: a restarted fine-tuning run goes on where
it stopped. Non-finite losses and gradient norms are caught at the step they happen and handled
by `train.on_nonfinite` (`nonfinite.py`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from lmforge.config import PretrainConfig, save_config
from lmforge.errors import CheckpointError, ConfigError, TrainingError
from lmforge.train import checkpoint as ckpt
from lmforge.train.host_memory import keep_freed_memory
from lmforge.train.metrics import (MetricsWriter, ProgressReporter, drop_records_after, mfu, peak_flops,
                                   peak_memory_bytes)
from lmforge.train.nonfinite import NonFinite, NonFiniteGuard
from lmforge.train.parallel import World, all_reduce_sum, barrier, init_world, shutdown
from lmforge.train.run_lock import RunLock
from lmforge.train.schedule import lr_at
from lmforge.train.setup import adapter_save, build_training, resolve_task, task_head, task_labels, wrap_for_training
from lmforge.train.state import RunState, restore, trainer_state
from lmforge.train.step import StepResult, optimizer_step, set_learning_rate

StepHook = Callable[[int, dict[str, Any]], None]
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _schedule_horizon(cfg: PretrainConfig, tokens_per_step: int) -> int:
    """Steps the LR schedule spans: from max_steps or max_tokens (time budgets estimate later)."""
    candidates = [cfg.train.max_steps] if cfg.train.max_steps else []
    if cfg.train.max_tokens:
        candidates.append(math.ceil(cfg.train.max_tokens / tokens_per_step))
    return min(candidates) if candidates else 0


def _check_budget(cfg: PretrainConfig) -> None:
    t = cfg.train
    if not (t.max_steps or t.max_tokens or t.max_seconds):
        raise ConfigError("no training budget: set --train.max_steps, --train.max_tokens or --train.max_seconds")
    for key in ("batch_size", "grad_accum", "seq_len"):
        if getattr(t, key) < 1:
            raise ConfigError(f"config key 'train.{key}': expected a positive integer, got {getattr(t, key)}")


def _lock_run_dir(run_dir: Path, world: World) -> Optional[RunLock]:
    """The main process takes the run directory's lock; every rank learns whether it got it, so
    all stop together when another run holds it."""
    lock, error = None, None
    if world.is_main:
        try:
            lock = RunLock(run_dir).acquire()
        except ConfigError as err:
            error = err
    if world.distributed:
        failed = all_reduce_sum(torch.tensor([1.0 if error else 0.0]), world)
        if float(failed[0]) and error is None:
            raise ConfigError(f"run directory '{run_dir}' is in use by another training run: see rank 0's error")
    if error is not None:
        raise error
    return lock


def pretrain(cfg: PretrainConfig, on_step: Optional[StepHook] = None) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.task`` (by default the model family's: causal LM, BERT's masked
    LM or T5's span corruption); returns the summary written to ``summary.json``.

    ``on_step(step, record)`` is called after every optimiser step (tests use it to
    simulate a crash).
    """
    _check_budget(cfg)
    if not cfg.train.init_from:  # (with it, the family is the source's: known once it is read)
        task_head(resolve_task(cfg, cfg.model.family)[0], cfg.model.family)  # a bad task is one line at once
    world = init_world(cfg.train.device)
    lock = _lock_run_dir(Path(cfg.train.run_dir), world)
    try:
        return PretrainRun(cfg, world, lock).run(on_step)
    finally:
        if lock is not None:
            lock.release()
        shutdown(world)


class PretrainRun:
    """One run of the loop: its parts (`Training`), counters (`RunState`), logs and checkpoints."""

    def __init__(self, cfg: PretrainConfig, world: World, lock: Optional[RunLock]) -> None:
        t = cfg.train
        self.cfg, self.world, self.run_dir = cfg, world, Path(t.run_dir)
        on_cpu = t.device == "cpu" or (t.device == "auto" and not torch.cuda.is_available())
        allocator_note = keep_freed_memory() if on_cpu and t.keep_freed_memory else ""
        notes = [f"took over the lock of a run that ended without releasing it ({lock.took_over})"] \
            if lock is not None and lock.took_over else []
        if world.is_main:
            removed = ckpt.remove_partial_saves(self.run_dir)
            if removed:
                notes.append(f"removed {removed} unfinished checkpoint save(s) left by an interrupted run")
        resume_from = ckpt.latest_checkpoint(self.run_dir) if t.resume else None
        self.training = build_training(cfg, world, resuming=resume_from is not None)
        self.state = RunState(horizon=_schedule_horizon(cfg, self.training.data.tokens_per_step))
        self.resumed_step = self._resume(resume_from) if resume_from is not None else -1
        self._start_logs(resume_from, notes, allocator_note)
        # checked every step where that is free (CPU) or needed (skip); fp16's scaler owns gradient overflows
        self.guard = NonFiniteGuard(every_step=self.training.device.type == "cpu" or t.on_nonfinite == "skip",
                                    watch_gradients=not self.training.scaler.is_enabled())
        self.last_val_loss = float("nan")

    def _resume(self, ckpt_dir: Path) -> int:
        from lmforge.tokenize import load_tokenizer

        saved = load_tokenizer(ckpt_dir / ckpt.TOKENIZER_DIR).fingerprint()
        if saved != self.training.tokenizer.fingerprint():
            raise CheckpointError(f"{ckpt_dir} was trained with another tokenizer than {self.cfg.train.tokenizer_dir}: "
                                  "pass a new --train.run_dir, or --train.resume false to start over there")
        self.state = restore(self.training, ckpt_dir, self.state.horizon)
        return self.state.step

    def _start_logs(self, resume_from: Optional[Path], notes: list[str], allocator_note: str) -> None:
        """Throughput figures, the saved config, metrics.jsonl and the first progress lines."""
        from lmforge.models import count_parameters

        tr, t = self.training, self.cfg.train
        num_params = count_parameters(tr.model)
        self.flops_token = tr.task.flops_per_token(tr.model_cfg, t.seq_len)  # per raw token read
        self.peak = peak_flops(tr.device, PRECISION_DTYPES[t.precision])  # (on CPU: measured, using the RNG)
        wrap_for_training(tr)
        if self.world.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ran = dataclasses.replace(self.cfg, model=tr.model_cfg, task=tr.task_cfg)  # resolved: what ran
            save_config(ran, self.run_dir / "config.yaml")
            # a resume goes on from the checkpoint: records of later steps (logged before the kill)
            # would otherwise appear twice; a fresh start in an old directory starts the file again
            drop_records_after(self.run_dir / "metrics.jsonl", max(self.resumed_step, 0))
        self.metrics = MetricsWriter(self.run_dir / "metrics.jsonl") if self.world.is_main else None
        self.progress = ProgressReporter(total_steps=t.max_steps or self.state.horizon, log_interval=t.log_interval,
                                         enabled=self.world.is_main, initial_step=self.state.step)
        if resume_from is not None:
            self.progress.write(f"resumed from {resume_from} at step {self.state.step}")
        elif tr.initialised_from is not None:
            report = tr.load_report
            changed = f" ({report.summary()})" if report is not None and (report.new or report.dropped) else ""
            self.progress.write(f"initialised from {tr.initialised_from}{changed}")
        if tr.adapter is not None:
            trainable = sum(p.numel() for p in tr.model.parameters() if p.requires_grad)
            self.progress.write(f"adapter {tr.adapter.name}: {len(tr.adapter.wrapped)} modules wrapped; {trainable:,} "
                                f"trainable parameters ({100 * trainable / max(num_params, 1):.2f}%)")
        for note in notes:
            self.progress.write(note)
        self.progress.write(f"model: {tr.model_cfg.family} {num_params / 1e6:.2f}M params, "
                            f"{self.flops_token / 1e6:.1f} MFLOPs/token; task {tr.task_cfg.name}; "
                            f"{self.world.world_size} process(es) on {tr.device}; "
                            f"{tr.data.tokens_per_step:,} tokens/step; {tr.data.describe()}")
        if allocator_note:
            self.progress.write(allocator_note)
        self.num_params = num_params

    def save(self, step: int) -> None:
        tr, t = self.training, self.cfg.train
        if self.world.is_main:
            ckpt.save_checkpoint(self.run_dir, step, tr.model, tr.model_cfg, tr.tokenizer,
                                 trainer_state(tr, dataclasses.replace(self.state, step=step)), t.keep_last,
                                 head=tr.head, task=dataclasses.asdict(tr.task_cfg),
                                 training={"tokens_seen": self.state.tokens_seen}, id2label=task_labels(tr.task),
                                 adapter=adapter_save(tr))
        barrier(self.world)

    def run(self, on_step: Optional[StepHook]) -> dict[str, Any]:
        t = self.cfg.train
        if t.on_nonfinite == "rollback" and ckpt.latest_checkpoint(self.run_dir) is None and self.state.step == 0:
            self.save(0)  # something to roll back to before the first interval checkpoint
        self.training.model.train()
        self.window_tokens, self.window_start = 0, time.perf_counter()
        while not (stop_reason := self._stop_reason()):
            record = self._train_one_step()
            if record is not None and on_step is not None:
                on_step(self.state.step, record)
        return self._finish(stop_reason)

    def _stop_reason(self) -> str:
        t, s = self.cfg.train, self.state
        if t.max_steps and s.step >= t.max_steps:
            return "max_steps"
        if t.max_tokens and s.tokens_seen >= t.max_tokens:
            return "max_tokens"
        if t.max_seconds and s.train_seconds >= t.max_seconds:
            return "max_seconds"
        return ""

    def _learning_rate(self) -> float:
        """The schedule's rate for this step, times the rollback factor; under a time budget only,
        the schedule's length is fixed from the speed of the first 10 steps."""
        s, t = self.state, self.cfg.train
        if s.horizon == 0 and s.step == 10:
            s.horizon = max(s.step + 1, int(t.max_seconds / (s.train_seconds / s.step)))
        return lr_at(s.step, self.cfg.optim, s.horizon) * s.lr_scale

    def _train_one_step(self) -> Optional[dict[str, Any]]:
        """One optimiser step, its bookkeeping, logging, evaluation and checkpoint; None when the
        step was undone (rolled back)."""
        tr, t, s = self.training, self.cfg.train, self.state
        step_start = time.perf_counter()
        lr = self._learning_rate()
        set_learning_rate(tr.optimizer, lr)
        result = optimizer_step(tr, tr.data.next_step(), self.guard, s.step + 1, t.on_nonfinite == "skip")
        if result.nonfinite is not None and not result.updated and t.on_nonfinite != "skip":
            self._diverged(result.nonfinite)  # stops, or rolls back and goes on from the checkpoint's step
            return None
        if result.nonfinite is not None:
            s.skipped_steps += 1  # the batch is consumed, the update dropped
        # One small all-reduce per step: the mean loss and a shared view of elapsed time,
        # so every rank takes the same stop decision under a wall-clock budget.
        step_seconds = time.perf_counter() - step_start
        reduced = all_reduce_sum(torch.stack([result.loss.float(), torch.tensor(step_seconds, device=tr.device)]),
                                 self.world)
        s.step += 1
        s.tokens_seen += tr.data.tokens_per_step
        s.train_seconds += float(reduced[1]) / self.world.world_size
        self.window_tokens += tr.data.tokens_per_step
        record: dict[str, Any] = {"step": s.step, "loss": float(reduced[0]) / self.world.world_size}
        record.update({key: float(value) for key, value in result.metrics.items()})  # rank 0's view
        if result.nonfinite is not None:
            record.update({"skipped": True, "skipped_steps": s.skipped_steps})
        return self._log_step(record, result, lr)

    def _log_step(self, record: dict[str, Any], result: StepResult, lr: float) -> Optional[dict[str, Any]]:
        t, s = self.cfg.train, self.state
        saving = bool(t.checkpoint_interval) and s.step % t.checkpoint_interval == 0
        logging = s.step % t.log_interval == 0 or s.step == 1
        if (logging or saving) and self._check_guard():  # on an accelerator the guard is read here
            return None  # rolled back: go on from the checkpoint's step
        if logging:
            elapsed = time.perf_counter() - self.window_start
            tokens_per_second = self.window_tokens / max(elapsed, 1e-9)
            record.update({
                "lr": lr, "grad_norm": float(result.grad_norm), "tokens_per_second": tokens_per_second,
                "mfu": mfu(tokens_per_second, self.flops_token, self.peak),
                "peak_memory_bytes": peak_memory_bytes(self.training.device),
                "tokens_seen": s.tokens_seen, "train_seconds": s.train_seconds,
                **({"skipped_steps": s.skipped_steps} if s.skipped_steps else {}),
            })
            self.window_tokens, self.window_start = 0, time.perf_counter()
        if t.eval_interval and s.step % t.eval_interval == 0:
            record.update(self.training.data.evaluate(self.training.model, self.training.device, t.precision))
            self.last_val_loss = record["val_loss"]
        if self.metrics is not None and (len(record) > 2 + len(result.metrics) or result.nonfinite is not None):
            self.metrics.write(record)
        self.progress.update(s.step, record)
        if saving:
            self.save(s.step)
        return record

    def _check_guard(self) -> bool:
        """Handle a bad step the deferred guard kept (a host sync); True if it rolled back."""
        event = self.guard.pending()
        if event is None:
            return False
        self._diverged(event)
        return True

    def _diverged(self, event: NonFinite) -> None:
        """Apply `train.on_nonfinite` (stop or rollback) to a bad step found by the guard."""
        t, s = self.cfg.train, self.state
        if self.metrics is not None:
            self.metrics.write({"step": event.step, "nonfinite": True, "loss": event.loss,
                                "grad_norm": event.grad_norm})
        newest = ckpt.latest_checkpoint(self.run_dir)
        if t.on_nonfinite == "rollback" and newest is not None and s.rollbacks < t.max_rollbacks:
            count, scale = s.rollbacks + 1, s.lr_scale * t.rollback_lr_factor
            self.state = s = restore(self.training, newest, s.horizon)  # the counters the checkpoint saved
            s.rollbacks, s.lr_scale = count, scale
            if self.metrics is not None:
                self.metrics.drop_after(s.step)  # the rolled-back steps are trained and logged again
                self.metrics.write({"step": s.step, "rollback": s.rollbacks, "lr_scale": s.lr_scale})
            self.progress.write(f"non-finite values at {event.describe()}: rolled back to {newest.name}, "
                                f"learning rate x{s.lr_scale:g} (rollback {s.rollbacks} of at most {t.max_rollbacks})")
            return
        self.progress.close()
        why = {"stop": "", "rollback": f" after {s.rollbacks} rollback(s) (--train.max_rollbacks {t.max_rollbacks})"
               if newest is not None else " and there is no checkpoint to roll back to"}[t.on_nonfinite]
        kept = f"the newest checkpoint, {newest.name}, is from before it" if newest else "no checkpoint was written"
        raise TrainingError(f"training diverged: non-finite values at {event.describe()}{why}; {kept}. "
                            "Lower --optim.lr, raise --optim.warmup_steps or --optim.grad_clip, or set "
                            "--train.on_nonfinite skip/rollback")

    def _finish(self, stop_reason: str) -> dict[str, Any]:
        """Final checkpoint, full validation and ``summary.json``."""
        tr, t, s = self.training, self.cfg.train, self.state
        self._check_guard()  # a rollback here is not followed by more training: the steps it undid are not redone
        self.progress.close()
        if s.step > self.resumed_step:
            self.save(s.step)
        summary: dict[str, Any] = {}
        if self.world.is_main:
            val = tr.data.final_evaluation(tr.model, tr.device, t.precision)
            total_seconds = max(s.train_seconds, 1e-9)
            summary = {
                "stop_reason": stop_reason, "steps": s.step, "tokens_seen": s.tokens_seen,
                "train_seconds": s.train_seconds, "tokens_per_second": s.tokens_seen / total_seconds,
                "mfu": mfu(s.tokens_seen / total_seconds, self.flops_token, self.peak),
                "num_params": self.num_params,
                "trainable_params": sum(p.numel() for p in tr.model.parameters() if p.requires_grad),
                "flops_per_token": self.flops_token,
                "objective": tr.task_cfg.name, **val, "last_periodic_val_loss": self.last_val_loss,
                "world_size": self.world.world_size, "device": str(tr.device), "precision": t.precision,
                "checkpoint": str(ckpt.latest_checkpoint(self.run_dir)),
                "skipped_steps": s.skipped_steps, "rollbacks": s.rollbacks,
            }
            self.metrics.write({"step": s.step, "final": True, **val})
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
            self.metrics.close()
        barrier(self.world)
        return summary
