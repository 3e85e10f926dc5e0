"""The pretraining loop, top to bottom in one function (nanoGPT's train.py is the model).

One optimiser step = ``grad_accum`` micro-batches per process x ``world_size`` processes.
The sampler draws the *global* batch for each step and every rank takes its own slice, so
one process with ``grad_accum = k`` and k processes with ``grad_accum = 1`` see the same
sequences and compute the same update (tested). The whole data state is the sampler's
``(seed, position)``; with the model, optimiser, scaler and RNG states it goes into every
checkpoint, so a resumed run continues exactly where the interrupted one stopped.

A run owns its directory: it holds `RUN_DIR/.lock` from start to end (`run_lock.py`), so
a second writer gets one error line naming the first. At start it removes the leftovers of
saves a kill interrupted, and on resume it drops the `metrics.jsonl` records of steps after
the checkpoint (they are trained and logged again). Non-finite losses and gradient norms are
caught at the step they happen and handled by `train.on_nonfinite` (`nonfinite.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from lmforge.config import PretrainConfig, save_config
from lmforge.errors import CheckpointError, ConfigError, TrainingError
from lmforge.evaluate import autocast_context
from lmforge.train import checkpoint as ckpt
from lmforge.train.host_memory import keep_freed_memory
from lmforge.train.nonfinite import NonFinite, NonFiniteGuard
from lmforge.train.run_lock import RunLock
from lmforge.train.tasks import extra_vocab, move_batch, task_for
from lmforge.train.parallel import (all_reduce_sum, barrier, init_world, resolve_device,
                                    shutdown, wrap_data_parallel)

StepHook = Callable[[int, dict[str, Any]], None]


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


def _lock_run_dir(run_dir: Path, world) -> Optional[RunLock]:
    """The main process takes the run directory's lock; every rank learns whether it got it, so
    all stop together when another run holds it."""
    lock, error = None, None
    if world.is_main:
        try:
            lock = RunLock(run_dir).acquire()
        except ConfigError as err:
            error = err
    if world.distributed:
        from lmforge.train.parallel import all_reduce_sum

        failed = all_reduce_sum(torch.tensor([1.0 if error else 0.0]), world)
        if float(failed[0]) and error is None:
            raise ConfigError(f"run directory '{run_dir}' is in use by another training run: see rank 0's error")
    if error is not None:
        raise error
    return lock


def pretrain(cfg: PretrainConfig, on_step: Optional[StepHook] = None) -> dict[str, Any]:
    """Pretrain on token shards with the model family's objective (causal LM, BERT's masked
    LM or T5's span corruption: `tasks.task_for`); returns the summary written to ``summary.json``.

    ``on_step(step, record)`` is called after every optimiser step (tests use it to
    simulate a crash).
    """
    _check_budget(cfg)
    world = init_world(cfg.train.device)
    lock = _lock_run_dir(Path(cfg.train.run_dir), world)
    try:
        return _pretrain(cfg, world, lock, on_step)
    finally:
        if lock is not None:
            lock.release()
        shutdown(world)


def _pretrain(cfg: PretrainConfig, world, lock: Optional[RunLock], on_step: Optional[StepHook]) -> dict[str, Any]:
    from lmforge.data import TokenShard, WindowSampler, check_tokenizer_matches
    from lmforge.models import build_model, count_parameters, resolve_model_config
    from lmforge.tokenize import load_tokenizer
    from lmforge.train.metrics import (MetricsWriter, ProgressReporter, drop_records_after, mfu, peak_flops,
                                       peak_memory_bytes)
    from lmforge.train.optim import build_optimizer
    from lmforge.train.schedule import lr_at

    t = cfg.train
    device = resolve_device(t.device, world)
    allocator_note = keep_freed_memory() if device.type == "cpu" and t.keep_freed_memory else ""
    run_dir = Path(t.run_dir)
    torch.manual_seed(t.seed)
    notes = [f"took over the lock of a run that ended without releasing it ({lock.took_over})"] \
        if lock is not None and lock.took_over else []
    if world.is_main:
        removed = ckpt.remove_partial_saves(run_dir)
        if removed:
            notes.append(f"removed {removed} unfinished checkpoint save(s) left by an interrupted run")

    # ---- data and model
    tokenizer = load_tokenizer(t.tokenizer_dir)
    check_tokenizer_matches(t.shards_dir, tokenizer)
    train_shard, val_shard = TokenShard(t.shards_dir, "train"), TokenShard(t.shards_dir, "val")
    model_cfg = resolve_model_config(dataclasses.replace(
        cfg.model, vocab_size=cfg.model.vocab_size or tokenizer.vocab_size + extra_vocab(cfg.model.family)))
    if model_cfg.vocab_size < tokenizer.vocab_size:
        raise ConfigError(f"config key 'model.vocab_size': {model_cfg.vocab_size} is smaller than the "
                          f"tokenizer's {tokenizer.vocab_size}; set it to 0 to take the tokenizer's")
    if t.seq_len > model_cfg.max_seq_len:
        raise ConfigError(f"config key 'train.seq_len': {t.seq_len} exceeds model.max_seq_len "
                          f"{model_cfg.max_seq_len}; lower it or raise model.max_seq_len")
    model = build_model(model_cfg).to(device)
    task = task_for(model_cfg, tokenizer, fused_loss=t.fused_loss)
    optimizer = build_optimizer(model, cfg.optim, device.type)
    scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "fp16")

    global_batch = t.batch_size * t.grad_accum * world.world_size
    window_len = task.window_len(t.seq_len)  # raw tokens per example (more than seq_len for T5)
    tokens_per_step = global_batch * window_len
    sampler = WindowSampler(train_shard.num_tokens, window_len, global_batch, t.seed)
    horizon = _schedule_horizon(cfg, tokens_per_step)
    step, tokens_seen, train_seconds = 0, 0, 0.0
    # lr_scale: 1, times rollback_lr_factor per rollback; all three are saved, so a resume keeps them
    lr_scale, rollbacks, skipped_steps = 1.0, 0, 0
    resumed_step = -1

    def restore(ckpt_dir: Path) -> None:
        """Model, optimiser, scaler, sampler, RNG and counters from a checkpoint (resume, rollback)."""
        nonlocal step, tokens_seen, train_seconds, horizon, lr_scale, rollbacks, skipped_steps
        changes = ckpt.model_config_changes(ckpt.read_model_config(ckpt_dir), model_cfg)
        if changes:
            raise CheckpointError(f"{ckpt_dir} was trained with another model config ({'; '.join(changes)}): "
                                  "pass the same model options, a new --train.run_dir, or --train.resume false")
        ckpt.load_weights(model, ckpt_dir)
        state = ckpt.load_trainer_state(ckpt_dir)
        try:
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            sampler.load_state_dict(state["sampler"])
            torch.set_rng_state(state["rng_cpu"])
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            raise CheckpointError(f"checkpoint '{ckpt_dir}' has a {ckpt.STATE_FILE} that does not fit this run "
                                  f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}): "
                                  "delete that checkpoint, or pass --train.resume false") from None
        if device.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        step, tokens_seen, train_seconds = state["step"], state["tokens_seen"], state["train_seconds"]
        horizon = state.get("horizon", horizon)
        lr_scale, rollbacks = state.get("lr_scale", 1.0), state.get("rollbacks", 0)
        skipped_steps = state.get("skipped_steps", 0)

    # ---- resume
    resume_from = ckpt.latest_checkpoint(run_dir) if t.resume else None
    if resume_from is not None:
        saved = load_tokenizer(resume_from / ckpt.TOKENIZER_DIR).fingerprint()
        if saved != tokenizer.fingerprint():
            raise CheckpointError(f"{resume_from} was trained with another tokenizer than {t.tokenizer_dir}: "
                                  "pass a new --train.run_dir, or --train.resume false to start over there")
        restore(resume_from)
        resumed_step = step

    num_params = count_parameters(model)
    flops_token = task.flops_per_token(model_cfg, t.seq_len)  # per raw token read, as tokens_per_step counts
    peak = peak_flops(device, {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[t.precision])
    train_model = wrap_data_parallel(model, world, device)
    if t.compile:
        train_model = torch.compile(train_model)

    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(dataclasses.replace(cfg, model=model_cfg), run_dir / "config.yaml")
        # a resume goes on from the checkpoint: records of later steps (logged before the kill)
        # would otherwise appear twice; a fresh start in an old directory starts the file again
        drop_records_after(run_dir / "metrics.jsonl", max(resumed_step, 0))
    metrics = MetricsWriter(run_dir / "metrics.jsonl") if world.is_main else None
    progress = ProgressReporter(total_steps=t.max_steps or horizon, log_interval=t.log_interval,
                                enabled=world.is_main, initial_step=step)
    if world.is_main and resume_from is not None:
        progress.write(f"resumed from {resume_from} at step {step}")
    for note in notes:
        progress.write(note)
    if world.is_main:
        progress.write(f"model: {model_cfg.family} {num_params / 1e6:.2f}M params, "
                       f"{flops_token / 1e6:.1f} MFLOPs/token; {world.world_size} process(es) on {device}; "
                       f"{tokens_per_step:,} tokens/step; train split {train_shard.num_tokens:,} tokens")
        if allocator_note:
            progress.write(allocator_note)

    def evaluate_val() -> dict[str, float]:
        """The task's val metrics on a fixed prefix of the val split (the same windows every time)."""
        num_tokens = min(val_shard.num_tokens, t.eval_batches * t.batch_size * t.seq_len + 1)
        return task.evaluate(model, val_shard.tokens[:num_tokens], t.seq_len, t.batch_size, device, t.precision)

    def save(step_now: int) -> None:
        state = {
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "sampler": sampler.state_dict(), "rng_cpu": torch.get_rng_state(),
            "step": step_now, "tokens_seen": tokens_seen, "train_seconds": train_seconds,
            "horizon": horizon, "lr_scale": lr_scale, "rollbacks": rollbacks, "skipped_steps": skipped_steps,
        }
        if device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(device)
        if world.is_main:
            ckpt.save_checkpoint(run_dir, step_now, model, model_cfg, t.tokenizer_dir, state, t.keep_last,
                                 extra_config={"tokens_seen": tokens_seen})
        barrier(world)

    # checked every step where that is free (CPU) or needed (skip); fp16's scaler owns gradient overflows
    guard = NonFiniteGuard(every_step=device.type == "cpu" or t.on_nonfinite == "skip",
                           watch_gradients=not scaler.is_enabled())

    def diverged(event: NonFinite) -> None:
        """Apply `train.on_nonfinite` (stop or rollback) to a bad step found by the guard."""
        nonlocal rollbacks, lr_scale
        if metrics is not None:
            metrics.write({"step": event.step, "nonfinite": True, "loss": event.loss, "grad_norm": event.grad_norm})
        newest = ckpt.latest_checkpoint(run_dir)
        if t.on_nonfinite == "rollback" and newest is not None and rollbacks < t.max_rollbacks:
            count, scale = rollbacks + 1, lr_scale * t.rollback_lr_factor
            restore(newest)  # (which sets the counters the checkpoint saved)
            rollbacks, lr_scale = count, scale
            if metrics is not None:
                metrics.drop_after(step)  # the rolled-back steps are trained and logged again
                metrics.write({"step": step, "rollback": rollbacks, "lr_scale": lr_scale})
            progress.write(f"non-finite values at {event.describe()}: rolled back to {newest.name}, "
                           f"learning rate x{lr_scale:g} (rollback {rollbacks} of at most {t.max_rollbacks})")
            return
        progress.close()
        why = {"stop": "", "rollback": f" after {rollbacks} rollback(s) (--train.max_rollbacks {t.max_rollbacks})"
               if newest is not None else " and there is no checkpoint to roll back to"}[t.on_nonfinite]
        kept = f"the newest checkpoint, {newest.name}, is from before it" if newest else "no checkpoint was written"
        raise TrainingError(f"training diverged: non-finite values at {event.describe()}{why}; {kept}. "
                            "Lower --optim.lr, raise --optim.warmup_steps or --optim.grad_clip, or set "
                            "--train.on_nonfinite skip/rollback")

    def check_guard() -> None:
        event = guard.pending()
        if event is not None:
            diverged(event)

    if t.on_nonfinite == "rollback" and ckpt.latest_checkpoint(run_dir) is None and step == 0:
        save(0)  # something to roll back to before the first interval checkpoint

    # ---- the loop
    model.train()
    last_val_loss = float("nan")
    window_tokens, window_start = 0, time.perf_counter()
    stop_reason = ""
    while True:
        if t.max_steps and step >= t.max_steps:
            stop_reason = "max_steps"
        elif t.max_tokens and tokens_seen >= t.max_tokens:
            stop_reason = "max_tokens"
        elif t.max_seconds and train_seconds >= t.max_seconds:
            stop_reason = "max_seconds"
        if stop_reason:
            break
        step_start = time.perf_counter()
        if horizon == 0 and step == 10:  # time budget only: fix the schedule length from the speed so far
            horizon = max(step + 1, int(t.max_seconds / (train_seconds / step)))
        lr = lr_at(step, cfg.optim, horizon) * lr_scale
        for group in optimizer.param_groups:
            group["lr"] = lr

        offsets = sampler.next_offsets()
        loss_sum = torch.zeros((), device=device)
        task_sums: dict[str, torch.Tensor] = {}  # e.g. masked-token accuracy, averaged over micro-batches
        for micro in range(t.grad_accum):
            chunk = (micro * world.world_size + world.rank) * t.batch_size
            # the seed names (run, step, slot in the global batch): the same masks after a resume
            # and whatever the number of processes
            batch_seed = (t.seed * 1_000_003 + step) * 1_000_003 + chunk
            batch = move_batch(task.batch(train_shard.tokens, offsets[chunk:chunk + t.batch_size], t.seq_len,
                                          batch_seed), device)
            # DDP all-reduces gradients only on the last micro-batch of the step
            sync = micro == t.grad_accum - 1 or not world.distributed
            with train_model.no_sync() if not sync else contextlib.nullcontext():
                with autocast_context(device, t.precision):
                    loss, task_metrics = task.loss(train_model, batch)
                    loss = loss / t.grad_accum
                scaler.scale(loss).backward()
            loss_sum += loss.detach()
            for key, value in task_metrics.items():
                task_sums[key] = task_sums.get(key, 0) + value.detach() / t.grad_accum

        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf"))
        bad = guard.observe(step + 1, loss_sum, grad_norm)  # None unless checked at once and bad
        if bad is not None and t.on_nonfinite != "skip":
            optimizer.zero_grad(set_to_none=True)
            diverged(bad)  # stops, or rolls back and goes on from the checkpoint's step
            continue
        if bad is None:
            scaler.step(optimizer)
        else:
            skipped_steps += 1  # the batch is consumed, the update dropped
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

        # One small all-reduce per step: the mean loss and a shared view of elapsed time,
        # so every rank takes the same stop decision under a wall-clock budget.
        step_seconds = time.perf_counter() - step_start
        reduced = all_reduce_sum(torch.stack([loss_sum.float(), torch.tensor(step_seconds, device=device)]), world)
        step += 1
        tokens_seen += tokens_per_step
        train_seconds += float(reduced[1]) / world.world_size
        window_tokens += tokens_per_step
        record: dict[str, Any] = {"step": step, "loss": float(reduced[0]) / world.world_size}
        record.update({key: float(value) for key, value in task_sums.items()})  # rank 0's view
        if bad is not None:
            record.update({"skipped": True, "skipped_steps": skipped_steps})

        saving = bool(t.checkpoint_interval) and step % t.checkpoint_interval == 0
        if step % t.log_interval == 0 or step == 1 or saving:
            # on an accelerator the guard is read here (a host sync), not every step
            rollbacks_before = rollbacks
            check_guard()
            if rollbacks != rollbacks_before:
                continue  # rolled back: go on from the checkpoint's step
        if step % t.log_interval == 0 or step == 1:
            elapsed = time.perf_counter() - window_start
            tokens_per_second = window_tokens / max(elapsed, 1e-9)
            record.update({
                "lr": lr, "grad_norm": float(grad_norm), "tokens_per_second": tokens_per_second,
                "mfu": mfu(tokens_per_second, flops_token, peak), "peak_memory_bytes": peak_memory_bytes(device),
                "tokens_seen": tokens_seen, "train_seconds": train_seconds,
                **({"skipped_steps": skipped_steps} if skipped_steps else {}),
            })
            window_tokens, window_start = 0, time.perf_counter()
        if t.eval_interval and step % t.eval_interval == 0:
            record.update(evaluate_val())
            last_val_loss = record["val_loss"]
        if metrics is not None and (len(record) > 2 + len(task_sums) or bad is not None):
            metrics.write(record)
        progress.update(step, record)
        if saving:
            save(step)
        if on_step is not None:
            on_step(step, record)

    # ---- the end: final checkpoint, full validation, summary
    check_guard()  # a rollback here is not followed by more training: the steps it undid are not redone
    progress.close()
    if step > resumed_step:
        save(step)
    summary: dict[str, Any] = {}
    if world.is_main:
        val = task.final_evaluation(model, val_shard, t.seq_len, t.batch_size, device, t.precision)
        total_seconds = max(train_seconds, 1e-9)
        summary = {
            "stop_reason": stop_reason, "steps": step, "tokens_seen": tokens_seen,
            "train_seconds": train_seconds, "tokens_per_second": tokens_seen / total_seconds,
            "mfu": mfu(tokens_seen / total_seconds, flops_token, peak),
            "num_params": num_params, "flops_per_token": flops_token,
            "objective": task.name, **val, "last_periodic_val_loss": last_val_loss, "world_size": world.world_size,
            "device": str(device), "precision": t.precision,
            "checkpoint": str(ckpt.latest_checkpoint(run_dir)),
            "skipped_steps": skipped_steps, "rollbacks": rollbacks,
        }
        metrics.write({"step": step, "final": True, **val})
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        metrics.close()
    barrier(world)
    return summary
