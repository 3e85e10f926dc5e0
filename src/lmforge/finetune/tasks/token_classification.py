"""Token classification with a BERT encoder (Devlin et al. 2019, sec. 4.3: named entities):
one tag per word.

Examples are JSONL ``{"tokens": [word, ...], "tags": [tag, ...]}`` (one tag per word; field
names configurable). Each word is encoded on its own (every word after the first with a
leading space, as it appears in running text) and the tokenizer's framing is put around the
whole; as in BERT, a word's tag is the label of its first sub-token and its other sub-tokens,
the special tokens and the padding carry -100 (no loss, not counted). Words beyond
``train.seq_len`` are cut off (counted in the run's first lines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lmforge.config import option
from lmforge.finetune.example_data import Row
from lmforge.finetune.examples import BadExample, Example, check_string_list
from lmforge.finetune.tasks.classify import ClassifierTask, classification_summary
from lmforge.finetune.tasks.common import ExampleFileOptions, pad_to
from lmforge.objectives import causal_lm_loss, masked_token_accuracy, token_loss_sum
from lmforge.train.tasks.registry import Batch, register_task

IGNORE = -100


@dataclass
class TokenClassificationOptions(ExampleFileOptions):
    tokens_field: str = option("tokens", "the field holding an example's words (a list of strings)")
    tags_field: str = option("tags", "the field holding one tag per word (strings or integers)")
    labels: list[str] = option([], "the tag set, in class-id order; empty = the sorted set of the train file's tags")


@register_task("token_classification", TokenClassificationOptions,
               "one tag per word (JSONL tokens/tags) with a BERT encoder; val loss, token accuracy, macro-F1")
class TokenClassificationTask(ClassifierTask):
    head = "token_classification"

    def fields(self) -> dict[str, Any]:
        return {self.options.tokens_field: list, self.options.tags_field: list}

    def label_values(self, record: dict[str, Any]) -> list[Any]:
        tags = record[self.options.tags_field]
        if not all(isinstance(tag, (str, int)) and not isinstance(tag, bool) for tag in tags):
            raise BadExample("wrong_type", f"field {self.options.tags_field!r} must be a list of strings or "
                                           "integers")
        return tags

    def encode(self, example: Example, seq_len: int) -> Row:
        words = check_string_list(example.record[self.options.tokens_field], self.options.tokens_field)
        tags = self.label_values(example.record)
        if len(words) != len(tags):
            raise BadExample("length_mismatch", f"{len(words)} {self.options.tokens_field} but {len(tags)} "
                                                f"{self.options.tags_field}; give one tag per word")
        ids: list[int] = []
        word_labels: list[int] = []
        for index, (word, tag) in enumerate(zip(words, tags)):
            label = self.labels.id(tag, "tag")
            pieces = self.tokenizer.encode(word if index == 0 else " " + word)
            ids += pieces
            word_labels += [label] + [IGNORE] * (len(pieces) - 1) if pieces else []
        inputs, offset, kept = self.framed(ids, seq_len)
        labels = [IGNORE] * len(inputs)
        labels[offset:offset + kept] = word_labels[:kept]
        return {"inputs": inputs, "labels": labels, "num_tokens": len(inputs)}

    def collate_labels(self, rows: list[Row], width: int) -> torch.Tensor:
        return pad_to([r["labels"] for r in rows], IGNORE, width)

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean cross-entropy over the micro-batch's labelled tokens, and their accuracy."""
        logits_BTC = self.logits(model, batch)
        correct, count = masked_token_accuracy(logits_BTC, batch["labels"])
        return causal_lm_loss(logits_BTC, batch["labels"]), {"token_accuracy": correct / count.clamp(min=1)}

    def measure(self, model: torch.nn.Module, batch: Batch) -> dict[str, Any]:
        logits_BTC = self.logits(model, batch)
        labels_BT = batch["labels"]
        nats, count = token_loss_sum(logits_BTC, labels_BT)
        labelled = labels_BT != IGNORE
        predictions = logits_BTC.argmax(dim=-1)[labelled]
        return {"nats": float(nats), "count": count, "correct": int((predictions == labels_BT[labelled]).sum()),
                "predictions": predictions.tolist(), "labels": labels_BT[labelled].tolist()}

    def summarize(self, sums: dict[str, Any]) -> dict[str, float]:
        """val_loss (per labelled token), val_accuracy (token accuracy over labelled tokens) and
        val_macro_f1 over the tags."""
        return classification_summary(sums)
