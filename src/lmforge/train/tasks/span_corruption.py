"""T5's span corruption (Raffel et al. 2020, sec. 3.1.4) on token shards, with teacher forcing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lmforge.config import ModelConfig, at_least, open_unit, option
from lmforge.errors import ConfigError
from lmforge.objectives import seq2seq_loss, shift_right
from lmforge.train.precision import autocast_context
from lmforge.train.tasks.registry import Batch, TaskContext, move_batch, register_task
from lmforge.train.tasks.shard_data import ShardTask


@dataclass
class SpanCorruptionOptions:
    noise_density: float = option(0.15, "share of each raw chunk's tokens that are corrupted", check=open_unit)
    mean_span_length: float = option(3.0, "mean length of a corrupted span", check=at_least(1))


@register_task("span_corruption", SpanCorruptionOptions, "T5's span corruption on token shards (100 sentinel ids "
                                                         "beyond the tokenizer's); val span loss, exact span accuracy")
class SpanCorruptionTask(ShardTask):
    """Each example reads a raw chunk long enough that its corrupted input fills ``seq_len``
    tokens (568 raw tokens for 512, as T5), corrupts ``noise_density`` of it in spans of mean
    length ``mean_span_length``, and trains the encoder-decoder to emit the spans after their
    sentinels. Sentinels are the top ``NUM_SENTINELS`` ids of the model's vocabulary
    (``<extra_id_0>`` = vocab_size - 1, as T5), beyond the tokenizer's own ids. Besides the loss
    it reports exact span accuracy: the share of spans whose every token the model predicts
    right under teacher forcing.
    """

    head = "seq2seq_lm"
    NUM_SENTINELS = 100
    extra_vocab = NUM_SENTINELS

    def __init__(self, tokenizer: Any, vocab_size: int, noise_density: float = 0.15,
                 mean_span_length: float = 3.0) -> None:
        if vocab_size < tokenizer.vocab_size + self.NUM_SENTINELS:
            raise ConfigError(f"config key 'model.vocab_size': span corruption needs the tokenizer's "
                              f"{tokenizer.vocab_size} ids plus {self.NUM_SENTINELS} sentinels; set it to 0")
        self.tokenizer = tokenizer
        self.sentinel_ids = [vocab_size - 1 - i for i in range(self.NUM_SENTINELS)]
        self.first_sentinel = vocab_size - self.NUM_SENTINELS
        self.eos_id, self.pad_id = tokenizer.require_id("eos", "task span_corruption"), tokenizer.pad_id
        self.noise_density, self.mean_span_length = noise_density, mean_span_length

    @classmethod
    def build(cls, options: SpanCorruptionOptions, context: TaskContext) -> "SpanCorruptionTask":
        return cls(context.tokenizer, context.model_cfg.vocab_size, options.noise_density, options.mean_span_length)

    def window_len(self, seq_len: int) -> int:
        from lmforge.masking import raw_length_for_inputs

        return raw_length_for_inputs(seq_len, self.noise_density, self.mean_span_length)[0]

    def flops_per_token(self, model_cfg: ModelConfig, seq_len: int) -> float:
        """One example's FLOPs at the lengths this task really trains (inputs of at most
        ``seq_len``, targets about a fifth of that: 512 and 115) over the raw tokens it reads
        (568), so MFU counts the short decoder honestly."""
        from lmforge.masking import span_corruption_lengths
        from lmforge.models.sizing import encoder_decoder_flops

        raw = self.window_len(seq_len)
        inputs_len, targets_len = span_corruption_lengths(raw, self.noise_density, self.mean_span_length)
        return encoder_decoder_flops(model_cfg, inputs_len, targets_len) / raw

    def batch(self, tokens: np.ndarray, offsets_B: np.ndarray, seq_len: int, seed: int) -> Batch:
        from lmforge.data import get_batch
        from lmforge.masking import span_corrupt

        windows_BR, _ = get_batch(tokens, offsets_B, self.window_len(seq_len))
        generator = torch.Generator().manual_seed(seed)
        pairs = [span_corrupt(row, self.sentinel_ids, self.eos_id, noise_density=self.noise_density,
                              mean_noise_span_length=self.mean_span_length, generator=generator)
                 for row in windows_BR]
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
            offsets_B = np.arange(first, min(first + batch_size, num_windows), dtype=np.int64) * raw
            batch = move_batch(self.batch(tokens, offsets_B, seq_len, seed=first), device)
            with autocast_context(device, precision):
                loss, hits, total = self._forward(model, batch)
            labelled = int((batch["labels"] != -100).sum())
            nats, count = nats + float(loss) * labelled, count + labelled
            exact, spans = exact + int(hits), spans + int(total)
        model.train(was_training)
        return {"val_loss": nats / max(count, 1), "val_exact_span_accuracy": exact / max(spans, 1)}
