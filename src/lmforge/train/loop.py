"""The pretraining loop, top to bottom in one function (nanoGPT's train.py is the model).

One optimiser step = ``grad_accum`` micro-batches per process x ``world_size`` processes.
The sampler draws the *global* batch for each step and every rank takes its own slice, so
one process with ``grad_accum = k`` and k processes with ``grad_accum = 1`` see the same
sequences and compute the same update (tested). The whole data state is the sampler's
``(seed, position)``; with the model, optimiser, scaler and RNG states it goes into every
checkpoint, so a resumed run continues exactly where the interrupted one stopped.
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
from lmforge.errors import CheckpointError, ConfigError
from lmforge.evaluate import autocast_context
from lmforge.train import checkpoint as ckpt
from lmforge.train.host_memory import keep_freed_memory
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


def pretrain(cfg: PretrainConfig, on_step: Optional[StepHook] = None) -> dict[str, Any]:
    """Pretrain on token shards with the model family's objective (causal LM, BERT's masked
    LM or T5's span corruption: `tasks.task_for`); returns the summary written to ``summary.json``.

    ``on_step(step, record)`` is called after every optimiser step (tests use it to
    simulate a crash).
    """
    from lmforge.data import TokenShard, WindowSampler, check_tokenizer_matches
    from lmforge.models import build_model, count_parameters, resolve_model_config
    from lmforge.tokenize import load_tokenizer
    from lmforge.train.metrics import MetricsWriter, ProgressReporter, mfu, peak_flops, peak_memory_bytes
    from lmforge.train.optim import build_optimizer
    from lmforge.train.schedule import lr_at

    _check_budget(cfg)
    t = cfg.train
    world = init_world(t.device)
    device = resolve_device(t.device, world)
    allocator_note = keep_freed_memory() if device.type == "cpu" and t.keep_freed_memory else ""
    run_dir = Path(t.run_dir)
    torch.manual_seed(t.seed)

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
    resumed_step = -1

    # ---- resume
    resume_from = ckpt.latest_checkpoint(run_dir) if t.resume else None
    if resume_from is not None:
        saved = load_tokenizer(resume_from / ckpt.TOKENIZER_DIR).fingerprint()
        if saved != tokenizer.fingerprint():
            raise CheckpointError(f"{resume_from} was trained with another tokenizer than {t.tokenizer_dir}: "
                                  "pass a new --train.run_dir, or --train.resume false to start over there")
        ckpt.load_weights(model, resume_from)
        state = ckpt.load_trainer_state(resume_from)
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        step, tokens_seen, train_seconds = state["step"], state["tokens_seen"], state["train_seconds"]
        horizon = state.get("horizon", horizon)
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
    metrics = MetricsWriter(run_dir / "metrics.jsonl") if world.is_main else None
    progress = ProgressReporter(total_steps=t.max_steps or horizon, log_interval=t.log_interval,
                                enabled=world.is_main, initial_step=step)
    if world.is_main and resume_from is not None:
        progress.write(f"resumed from {resume_from} at step {step}")
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
            "horizon": horizon,
        }
        if device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(device)
        if world.is_main:
            ckpt.save_checkpoint(run_dir, step_now, model, model_cfg, t.tokenizer_dir, state, t.keep_last,
                                 extra_config={"tokens_seen": tokens_seen})
        barrier(world)

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
        lr = lr_at(step, cfg.optim, horizon)
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
        scaler.step(optimizer)
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

        if step % t.log_interval == 0 or step == 1:
            elapsed = time.perf_counter() - window_start
            tokens_per_second = window_tokens / max(elapsed, 1e-9)
            record.update({
                "lr": lr, "grad_norm": float(grad_norm), "tokens_per_second": tokens_per_second,
                "mfu": mfu(tokens_per_second, flops_token, peak), "peak_memory_bytes": peak_memory_bytes(device),
                "tokens_seen": tokens_seen, "train_seconds": train_seconds,
            })
            window_tokens, window_start = 0, time.perf_counter()
        if t.eval_interval and step % t.eval_interval == 0:
            record.update(evaluate_val())
            last_val_loss = record["val_loss"]
        if metrics is not None and len(record) > 2 + len(task_sums):
            metrics.write(record)
        progress.update(step, record)
        if t.checkpoint_interval and step % t.checkpoint_interval == 0:
            save(step)
        if on_step is not None:
            on_step(step, record)

    # ---- the end: final checkpoint, full validation, summary
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
        }
        metrics.write({"step": step, **val})
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        metrics.close()
    barrier(world)
    shutdown(world)
    return summary
