"""Sequence classification with a BERT encoder (Devlin et al. 2019, sec. 4.1: GLUE): one
label per text, predicted from the pooled first token.

Examples are JSONL ``{"text": ..., "label": ...}`` (field names configurable; a label is a
string or an integer, compared as text). The input is the tokenizer's own framing of the
text (``tokenizer.frame(tokenizer.encode(text))``: ``[CLS] ... [SEP]`` for BERT's,
``<s> ... </s>`` for lmforge's), the text cut to fit ``train.seq_len``; rows are padded to
the longest in the batch and the attention mask hides the padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lmforge.config import option
from lmforge.finetune.example_data import Row
from lmforge.finetune.examples import Example
from lmforge.finetune.tasks.classify import ClassifierTask, classification_summary
from lmforge.finetune.tasks.common import ExampleFileOptions
from lmforge.train.tasks.registry import Batch, register_task


@dataclass
class SequenceClassificationOptions(ExampleFileOptions):
    text_field: str = option("text", "the field holding an example's text")
    label_field: str = option("label", "the field holding an example's label (a string or an integer)")
    labels: list[str] = option([], "the label set, in class-id order; empty = the sorted set of the train "
                                   "file's labels (integers in numeric order, then strings)")


@register_task("sequence_classification", SequenceClassificationOptions,
               "one label per text (JSONL text/label) with a BERT encoder; val loss, accuracy, macro-F1")
class SequenceClassificationTask(ClassifierTask):
    head = "sequence_classification"

    def fields(self) -> dict[str, Any]:
        return {self.options.text_field: str, self.options.label_field: (str, int)}

    def label_values(self, record: dict[str, Any]) -> list[Any]:
        return [record[self.options.label_field]]

    def encode(self, example: Example, seq_len: int) -> Row:
        label = self.labels.id(example.record[self.options.label_field], "label")
        inputs, _, _ = self.framed(self.tokenizer.encode(example.record[self.options.text_field]), seq_len)
        return {"inputs": inputs, "label": label, "num_tokens": len(inputs)}

    def collate_labels(self, rows: list[Row], width: int) -> torch.Tensor:
        return torch.tensor([r["label"] for r in rows], dtype=torch.long)

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean cross-entropy over the micro-batch's examples, and its accuracy."""
        logits_BC = self.logits(model, batch).float()
        accuracy = (logits_BC.argmax(dim=-1) == batch["labels"]).float().mean()
        return F.cross_entropy(logits_BC, batch["labels"]), {"accuracy": accuracy.detach()}

    def measure(self, model: torch.nn.Module, batch: Batch) -> dict[str, Any]:
        logits_BC = self.logits(model, batch).float()
        predictions = logits_BC.argmax(dim=-1)
        return {"nats": float(F.cross_entropy(logits_BC, batch["labels"], reduction="sum")),
                "count": int(batch["labels"].numel()), "correct": int((predictions == batch["labels"]).sum()),
                "predictions": predictions.tolist(), "labels": batch["labels"].tolist()}

    def summarize(self, sums: dict[str, Any]) -> dict[str, float]:
        """val_loss (per example), val_accuracy and val_macro_f1 over the examples measured."""
        return classification_summary(sums)
