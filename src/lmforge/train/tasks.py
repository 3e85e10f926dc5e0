"""What the training loop optimises: one small object per objective, one loop for all.

A task turns sampled token windows into a batch and a batch into ``(loss, metrics)``
(``loss, metrics = task.loss(model, batch)``; docs/architecture.md, 'Tasks and objectives'),
and measures itself on the val split. The loop in ``loop.py`` knows nothing else about the
objective, so masked LM (BERT) and span corruption (T5) plug in here as further tasks without
a second loop.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.evaluate import autocast_context, evaluate_shard, loss_on_stream
from lmforge.objectives import causal_lm_loss, masked_lm_loss, masked_token_accuracy, seq2seq_loss, shift_right

Batch = dict[str, torch.Tensor]


class Task(Protocol):
    name: str

    def window_len(self, seq_len: int) -> int:
        """Raw tokens one example reads (the sampler's stride): ``seq_len`` for (masked) LM."""

    def flops_per_token(self, model_cfg: ModelConfig, seq_len: int) -> float:
        """Training FLOPs per raw token read (per ``window_len`` token), the figure MFU multiplies
        by the loop's tokens per second."""

    def batch(self, tokens: np.ndarray, offsets: np.ndarray, seq_len: int, seed: int) -> Batch:
        """``seed`` is fixed by (run seed, step, micro-batch slot): randomness in a batch (masking)
        is then the same after a resume and in any split of the global batch over processes."""

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def evaluate(self, model: torch.nn.Module, tokens: np.ndarray, seq_len: int, batch_size: int,
                 device: torch.device, precision: str) -> dict[str, float]: ...

    def final_evaluation(self, model: torch.nn.Module, shard: Any, seq_len: int, batch_size: int,
                         device: torch.device, precision: str) -> dict[str, float]:
        """Metrics on the whole val split for ``summary.json`` (keys start with ``val_``)."""


class CausalLMTask:
    """Next-token prediction: inputs ``w[:-1]``, targets ``w[1:]`` of each window of seq_len+1 tokens."""

    name = "causal_lm"

    def __init__(self, fused_loss: bool = True):
        # True: the model computes head + loss in row chunks (`linear_cross_entropy`); False:
        # full logits, then `causal_lm_loss`. Same value and gradients, less memory.
        self.fused_loss = fused_loss

    def window_len(self, seq_len: int) -> int:
        return seq_len

    def flops_per_token(self, model_cfg: ModelConfig, seq_len: int) -> float:
        from lmforge.models import flops_per_token

        return flops_per_token(model_cfg, seq_len)

    def batch(self, tokens: np.ndarray, offsets: np.ndarray, seq_len: int, seed: int) -> Batch:
        from lmforge.data import get_batch

        inputs_BT, targets_BT = get_batch(tokens, offsets, seq_len)
        return {"inputs": inputs_BT, "targets": targets_BT}

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.fused_loss:
            return model(batch["inputs"], targets_BT=batch["targets"]), {}
        return causal_lm_loss(model(batch["inputs"]), batch["targets"]), {}

    def evaluate(self, model: torch.nn.Module, tokens: np.ndarray, seq_len: int, batch_size: int,
                 device: torch.device, precision: str) -> dict[str, float]:
        nats, count = loss_on_stream(model, tokens, seq_len, batch_size, device, precision)
        return {"val_loss": nats / max(count, 1)}

    def final_evaluation(self, model: torch.nn.Module, shard: Any, seq_len: int, batch_size: int,
                         device: torch.device, precision: str) -> dict[str, float]:
        val = evaluate_shard(model, shard, seq_len, batch_size, device, precision=precision)
        return {"val_loss": val["loss"], "val_perplexity": val["perplexity"],
                "val_bits_per_byte": val["bits_per_byte"], "val_tokens": val["tokens"]}


class MaskedLMTask:
    """BERT's masked-LM objective (Devlin et al. 2019) on windows of ``seq_len`` tokens.

    Masking is dynamic (RoBERTa, Liu et al. 2019): each draw of a window gets fresh masks, from
    a generator seeded per micro-batch, so runs stay reproducible and resumable. Windows are
    packed across document boundaries (RoBERTa's FULL-SENTENCES), the eos token separating them.
    """

    name = "masked_lm"

    def window_len(self, seq_len: int) -> int:
        return seq_len

    def flops_per_token(self, model_cfg: ModelConfig, seq_len: int) -> float:
        from lmforge.models import flops_per_token

        return flops_per_token(model_cfg, seq_len)

    def __init__(self, tokenizer: Any, mask_prob: float = 0.15) -> None:
        self.mask_id, self.pad_id = tokenizer.mask_id, tokenizer.pad_id
        self.vocab_size = tokenizer.vocab_size
        self.special_ids = [tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, tokenizer.unk_id,
                            tokenizer.mask_id]
        self.mask_prob = mask_prob

    def batch(self, tokens: np.ndarray, offsets: np.ndarray, seq_len: int, seed: int) -> Batch:
        from lmforge.data import get_batch
        from lmforge.masking import mask_tokens

        windows_BT, _ = get_batch(tokens, offsets, seq_len)
        inputs_BT, labels_BT = mask_tokens(windows_BT, mask_id=self.mask_id, vocab_size=self.vocab_size,
                                           special_ids=self.special_ids, mask_prob=self.mask_prob,
                                           generator=torch.Generator().manual_seed(seed))
        return {"inputs": inputs_BT, "labels": labels_BT}

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits_BTV = model(batch["inputs"])
        correct, count = masked_token_accuracy(logits_BTV, batch["labels"])
        return masked_lm_loss(logits_BTV, batch["labels"]), {"masked_accuracy": correct / count.clamp(min=1)}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, tokens: np.ndarray, seq_len: int, batch_size: int,
                 device: torch.device, precision: str) -> dict[str, float]:
        """Masked-token loss and accuracy on consecutive windows, with fixed masks (seed 0)."""
        was_training = model.training
        model.eval()
        num_windows = (len(tokens) - 1) // seq_len
        nats, correct, count = 0.0, 0, 0
        for first in range(0, num_windows, batch_size):
            offsets = np.arange(first, min(first + batch_size, num_windows), dtype=np.int64) * seq_len
            batch = move_batch(self.batch(tokens, offsets, seq_len, seed=first), device)
            with autocast_context(device, precision):
                logits_BTV = model(batch["inputs"])
            hits, labelled = masked_token_accuracy(logits_BTV, batch["labels"])
            nats += float(masked_lm_loss(logits_BTV, batch["labels"])) * int(labelled)
            correct, count = correct + int(hits), count + int(labelled)
        model.train(was_training)
        return {"val_loss": nats / max(count, 1), "val_masked_accuracy": correct / max(count, 1)}

    def final_evaluation(self, model: torch.nn.Module, shard: Any, seq_len: int, batch_size: int,
                         device: torch.device, precision: str) -> dict[str, float]:
        result = self.evaluate(model, shard.tokens, seq_len, batch_size, device, precision)
        return {**result, "val_tokens": int(shard.num_tokens)}


class SpanCorruptionTask:
    """T5's span-corruption objective (Raffel et al. 2020, sec. 3.1.4) with teacher forcing.

    Each example reads a raw chunk long enough that its corrupted input fills ``seq_len``
    tokens (568 raw tokens for 512, as T5), corrupts 15% of it in spans of mean length 3, and
    trains the encoder-decoder to emit the spans after their sentinels. Sentinels are the top
    ``NUM_SENTINELS`` ids of the model's vocabulary (``<extra_id_0>`` = vocab_size - 1, as T5),
    beyond the tokenizer's own ids. Besides the loss it reports exact span accuracy: the share
    of spans whose every token the model predicts right under teacher forcing.
    """

    name = "span_corruption"
    NUM_SENTINELS = 100

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        if vocab_size < tokenizer.vocab_size + self.NUM_SENTINELS:
            raise ConfigError(f"config key 'model.vocab_size': span corruption needs the tokenizer's "
                              f"{tokenizer.vocab_size} ids plus {self.NUM_SENTINELS} sentinels; set it to 0")
        self.sentinel_ids = [vocab_size - 1 - i for i in range(self.NUM_SENTINELS)]
        self.first_sentinel = vocab_size - self.NUM_SENTINELS
        self.eos_id, self.pad_id = tokenizer.eos_id, tokenizer.pad_id

    def window_len(self, seq_len: int) -> int:
        from lmforge.masking import raw_length_for_inputs

        return raw_length_for_inputs(seq_len)[0]

    def flops_per_token(self, model_cfg: ModelConfig, seq_len: int) -> float:
        """One example's FLOPs at the lengths this task really trains (inputs of at most
        ``seq_len``, targets about a fifth of that: 512 and 115) over the raw tokens it reads
        (568), so MFU counts the short decoder honestly."""
        from lmforge.masking import span_corruption_lengths
        from lmforge.models.sizing import encoder_decoder_flops

        raw = self.window_len(seq_len)
        inputs_len, targets_len = span_corruption_lengths(raw)
        return encoder_decoder_flops(model_cfg, inputs_len, targets_len) / raw

    def batch(self, tokens: np.ndarray, offsets: np.ndarray, seq_len: int, seed: int) -> Batch:
        from lmforge.data import get_batch
        from lmforge.masking import span_corrupt

        windows_BR, _ = get_batch(tokens, offsets, self.window_len(seq_len))
        generator = torch.Generator().manual_seed(seed)
        pairs = [span_corrupt(row, self.sentinel_ids, self.eos_id, generator=generator) for row in windows_BR]
        labels_BU = torch.stack([target for _, target in pairs])
        return {"inputs": torch.stack([inputs for inputs, _ in pairs]), "labels": labels_BU,
                "decoder_inputs": shift_right(labels_BU, decoder_start_id=self.pad_id, pad_id=self.pad_id)}

    def _forward(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits_BUV = model(batch["inputs"], batch["decoder_inputs"])
        exact, spans = self.exact_spans(logits_BUV, batch["labels"])
        return seq2seq_loss(logits_BUV, batch["labels"]), exact, spans

    def exact_spans(self, logits_BUV: torch.Tensor, labels_BU: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(spans predicted exactly, spans): a span is the tokens after one sentinel up to the next."""
        correct_BU = logits_BUV.argmax(dim=-1) == labels_BU
        is_sentinel_BU = labels_BU >= self.first_sentinel
        span_BU = is_sentinel_BU.long().cumsum(dim=1)  # span number of each position
        content_BU = ~is_sentinel_BU & (labels_BU != self.eos_id) & (labels_BU >= 0)
        num_bins = int(span_BU.max()) + 1
        wrong_BS = torch.zeros(labels_BU.shape[0], num_bins, device=labels_BU.device)
        size_BS = torch.zeros_like(wrong_BS)
        wrong_BS.scatter_add_(1, span_BU, (content_BU & ~correct_BU).float())
        size_BS.scatter_add_(1, span_BU, content_BU.float())
        real_BS = size_BS > 0
        return (real_BS & (wrong_BS == 0)).sum(), real_BS.sum()

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, exact, spans = self._forward(model, batch)
        return loss, {"exact_span_accuracy": exact / spans.clamp(min=1)}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, tokens: np.ndarray, seq_len: int, batch_size: int,
                 device: torch.device, precision: str) -> dict[str, float]:
        """Span loss (per target token) and exact span accuracy on consecutive chunks, fixed seeds."""
        was_training = model.training
        model.eval()
        raw = self.window_len(seq_len)
        num_windows = (len(tokens) - 1) // raw
        nats, count, exact, spans = 0.0, 0, 0, 0
        for first in range(0, num_windows, batch_size):
            offsets = np.arange(first, min(first + batch_size, num_windows), dtype=np.int64) * raw
            batch = move_batch(self.batch(tokens, offsets, seq_len, seed=first), device)
            with autocast_context(device, precision):
                loss, hits, total = self._forward(model, batch)
            labelled = int((batch["labels"] != -100).sum())
            nats, count = nats + float(loss) * labelled, count + labelled
            exact, spans = exact + int(hits), spans + int(total)
        model.train(was_training)
        return {"val_loss": nats / max(count, 1), "val_exact_span_accuracy": exact / max(spans, 1)}

    def final_evaluation(self, model: torch.nn.Module, shard: Any, seq_len: int, batch_size: int,
                         device: torch.device, precision: str) -> dict[str, float]:
        return {**self.evaluate(model, shard.tokens, seq_len, batch_size, device, precision),
                "val_tokens": int(shard.num_tokens)}


def extra_vocab(family: str) -> int:
    """Ids a family's task adds beyond the tokenizer's (T5's sentinels)."""
    return SpanCorruptionTask.NUM_SENTINELS if family == "t5" else 0


def task_for(model_cfg: ModelConfig, tokenizer: Any, fused_loss: bool = True) -> Task:
    """The pretraining task of a model family: causal LM for decoders, masked LM for BERT, span
    corruption for T5. `fused_loss`: causal LM computes head and loss in row chunks."""
    if model_cfg.family in ("gpt2", "llama", "mistral", "falcon"):
        return CausalLMTask(fused_loss)
    if model_cfg.family == "bert":
        return MaskedLMTask(tokenizer)
    if model_cfg.family == "t5":
        return SpanCorruptionTask(tokenizer, model_cfg.vocab_size)
    raise ConfigError(f"model.family {model_cfg.family!r} has no pretraining task yet: use a decoder family "
                      "or bert")


def move_batch(batch: Batch, device: torch.device) -> Batch:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


__all__ = ["Batch", "CausalLMTask", "MaskedLMTask", "SpanCorruptionTask", "Task", "extra_vocab", "move_batch",
           "task_for"]
