"""Seq2seq fine-tuning of an encoder-decoder (T5, Raffel et al. 2020: every task as text to
text) on JSONL ``{"input": ..., "target": ...}`` pairs, with teacher forcing.

The encoder reads ``encode(input) + [eos]``, the labels are ``encode(target) + [eos]`` and the
decoder reads them shifted right with the pad id as the start token (T5's convention, as
span corruption: `objectives.shift_right`). Inputs and targets are padded to the longest in
the batch; the encoder attention mask hides padded inputs (in self- and cross-attention) and
padded labels are -100. An input longer than ``train.seq_len`` or a target longer than
``max_target_len`` is handled by ``too_long``.

Evaluation reports the loss per target token, the teacher-forced token accuracy and the exact
match: the share of examples whose every label token (eos included) is the argmax. Under
greedy decoding the decoder's first step sees the start token, as in teacher forcing, and as
long as every argmax equals the label the next step sees the same prefix too, so this exact
match is exactly the share of examples greedy decoding reproduces word for word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Optional

import torch

from lmforge.config import ModelConfig, non_negative, option
from lmforge.errors import DataError
from lmforge.finetune.example_data import ExampleData, Row
from lmforge.finetune.examples import Example, Skips
from lmforge.finetune.tasks.common import TOO_LONG_HELP, ExampleFileOptions, ExampleFileTask, check_paths, pad_to, \
    read_split
from lmforge.objectives import masked_token_accuracy, shift_right, token_loss_sum
from lmforge.train.tasks.registry import Batch, TaskContext, register_task

if TYPE_CHECKING:
    from lmforge.config import TrainConfig
    from lmforge.train.parallel import World

IGNORE = -100


@dataclass
class Seq2SeqOptions(ExampleFileOptions):
    input_field: str = option("input", "the field holding the encoder's text")
    target_field: str = option("target", "the field holding the text the decoder learns to write")
    max_target_len: int = option(0, "longest target in tokens, eos included (0 = train.seq_len)", check=non_negative)
    too_long: Literal["error", "skip", "truncate"] = option("error", TOO_LONG_HELP)


@register_task("seq2seq", Seq2SeqOptions, "text to text (JSONL input/target) with T5, teacher forcing; val loss, "
                                          "token accuracy, exact match")
class Seq2SeqTask(ExampleFileTask):
    head = "seq2seq_lm"

    def __init__(self, options: Seq2SeqOptions, tokenizer: Any) -> None:
        self.options, self.tokenizer = options, tokenizer
        self.eos_id = tokenizer.require_id("eos", "the seq2seq task (it ends inputs and targets)")
        self.pad_id = tokenizer.pad_id

    @classmethod
    def build(cls, options: Seq2SeqOptions, context: TaskContext) -> "Seq2SeqTask":
        return cls(options, context.tokenizer)

    def flops_per_token(self, model_cfg: ModelConfig, seq_len: int) -> float:
        """An encoder-decoder example's FLOPs at ``seq_len`` inputs and as many targets, per
        token read (`models.sizing.encoder_decoder_flops`): an upper bound for shorter rows."""
        from lmforge.models.sizing import encoder_decoder_flops

        target_len = self.options.max_target_len or seq_len
        return encoder_decoder_flops(model_cfg, seq_len, target_len) / (seq_len + target_len)

    def encode(self, example: Example, skips: Skips, seq_len: int) -> Optional[Row]:
        inputs = self.tokenizer.encode(example.record[self.options.input_field]) + [self.eos_id]
        labels = self.tokenizer.encode(example.record[self.options.target_field]) + [self.eos_id]
        max_target = self.options.max_target_len or seq_len
        for what, ids, limit, key in (("input", inputs, seq_len, "train.seq_len"),
                                      ("target", labels, max_target, "task.options.max_target_len")):
            if len(ids) <= limit:
                continue
            message = f"the {what} is {len(ids)} tokens (eos included), more than {key} {limit}"
            if self.options.too_long == "error":
                raise DataError(f"{example.where}: {message}: raise {key}, shorten the example, or set "
                                "task.options.too_long to skip or truncate")
            if self.options.too_long == "skip":
                skips.add(f"too_long_{what}", example.where, message)
                return None
            del ids[limit - 1:]
            ids.append(self.eos_id)  # a cut sequence still ends with eos
        return {"inputs": inputs, "labels": labels, "num_tokens": len(inputs) + len(labels)}

    def open_data(self, train: "TrainConfig", world: "World") -> ExampleData:
        check_paths(self.options)
        fields = {self.options.input_field: str, self.options.target_field: str}

        def encode(example: Example, skips: Skips) -> Optional[Row]:
            return self.encode(example, skips, train.seq_len)

        train_rows, train_skips = read_split(self.options.train_path, "task.options.train_path", fields,
                                             self.options.on_bad_example, encode)
        val_rows, val_skips = read_split(self.options.val_path, "task.options.val_path", fields,
                                         self.options.on_bad_example, encode)
        return ExampleData(self, train_rows, val_rows, train, world, {"train": train_skips, "val": val_skips})

    def collate(self, rows: list[Row]) -> Batch:
        labels_BU = pad_to([r["labels"] for r in rows], IGNORE)
        return {"inputs": pad_to([r["inputs"] for r in rows], self.pad_id),
                "attention_mask": pad_to([[1] * len(r["inputs"]) for r in rows], 0),
                "labels": labels_BU,
                "decoder_inputs": shift_right(labels_BU, decoder_start_id=self.pad_id, pad_id=self.pad_id)}

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean cross-entropy over the micro-batch's target tokens (the head's fused loss)."""
        return model(batch["inputs"], batch["decoder_inputs"], batch["attention_mask"],
                     targets_BU=batch["labels"]), {}

    def measure(self, model: torch.nn.Module, batch: Batch) -> dict[str, Any]:
        logits_BUV = model(batch["inputs"], batch["decoder_inputs"], batch["attention_mask"])
        labels_BU = batch["labels"]
        nats, count = token_loss_sum(logits_BUV, labels_BU)
        correct, _ = masked_token_accuracy(logits_BUV, labels_BU)
        wrong_BU = (logits_BUV.argmax(dim=-1) != labels_BU) & (labels_BU != IGNORE)
        return {"nats": float(nats), "tokens": count, "correct": int(correct),
                "exact": int((~wrong_BU.any(dim=1)).sum()), "examples": int(labels_BU.shape[0])}

    def summarize(self, sums: dict[str, Any]) -> dict[str, float]:
        tokens = max(sums.get("tokens", 0), 1)
        return {"val_loss": sums.get("nats", 0.0) / tokens, "val_token_accuracy": sums.get("correct", 0) / tokens,
                "val_exact_match": sums.get("exact", 0) / max(sums.get("examples", 0), 1)}
