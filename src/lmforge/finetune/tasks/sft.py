"""Supervised fine-tuning of a causal LM on prompt/response and chat JSONL, loss on the
response tokens only (as InstructGPT's SFT, Ouyang et al. 2022, and Hugging Face TRL's
completion-only / assistant-only loss).

Two formats (``format: auto`` picks per line):

- ``{"prompt": ..., "response": ...}``: frame-less, ``[bos] + encode(prompt) +
  encode(response) + [eos]`` (bos/eos when the tokenizer has them; nothing between prompt
  and response, so put any separator you want in the prompt). Loss on the response and eos.
- ``{"messages": [{"role", "content"}, ...]}``: rendered with the chat template
  (`lmforge.finetune.chat`: the tokenizer's, or lmforge's built-in one), loss on every
  assistant response (its end-of-turn token included), never on system or user text.

An example of n tokens is n - 1 (input, next-token target) pairs, the targets -100 outside
the responses; it must fit ``train.seq_len`` positions (``too_long``). With ``packing``,
consecutive train examples share a row of ``train.seq_len`` positions: ``document_ids``
keep each example's attention to itself and ``position_ids`` restart at 0 per example, so
a packed example's loss is the loss it has alone (tested), with less padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Optional

import numpy as np
import torch

from lmforge.config import option
from lmforge.errors import DataError
from lmforge.finetune.chat import ChatTemplate, check_messages, resolve_template, response_segments, tokenize_segments
from lmforge.finetune.example_data import ExampleData, Row
from lmforge.finetune.examples import BadExample, Example, Skips, check_record
from lmforge.finetune.tasks.common import TOO_LONG_HELP, ExampleFileOptions, ExampleFileTask, check_paths, pad_to, \
    read_split
from lmforge.objectives import masked_token_accuracy, token_loss_sum
from lmforge.train.tasks.registry import Batch, TaskContext, register_task

if TYPE_CHECKING:
    from lmforge.config import TrainConfig
    from lmforge.train.parallel import World

IGNORE = -100
PAD_DOCUMENT = -1  # document id of a packed row's padding (attends only to other padding)


@dataclass
class SFTOptions(ExampleFileOptions):
    format: Literal["auto", "prompt_response", "messages"] = option(
        "auto", "example format: prompt_response ({prompt, response}), messages (chat: {messages: [{role, "
                "content}]}) or auto (per line, by its fields)")
    chat_template: str = option("", "chat template for messages: \"\" = the tokenizer's (lmforge's built-in one "
                                    "if it has none), default = the built-in one, else Jinja text or a file")
    packing: bool = option(False, "pack consecutive train examples into rows of train.seq_len positions "
                                  "(attention and positions restart per example)")
    too_long: Literal["error", "skip", "truncate"] = option("error", TOO_LONG_HELP)


@register_task("sft", SFTOptions, "supervised fine-tuning on prompt/response or chat JSONL, loss on the responses "
                                  "only; val response loss and token accuracy")
class SFTTask(ExampleFileTask):
    head = "causal_lm"

    def __init__(self, options: SFTOptions, tokenizer: Any) -> None:
        self.options, self.tokenizer = options, tokenizer
        self._template: Optional[ChatTemplate] = None

    @classmethod
    def build(cls, options: SFTOptions, context: TaskContext) -> "SFTTask":
        return cls(options, context.tokenizer)

    @property
    def template(self) -> ChatTemplate:
        if self._template is None:
            source, origin = resolve_template(self.options.chat_template, self.tokenizer)
            self._template = ChatTemplate(source, self.tokenizer, origin)
        return self._template

    # ------------------------------------------------------------------ examples -> rows

    def tokens(self, record: dict[str, Any]) -> tuple[list[int], list[bool]]:
        """(ids, is_response per id) of one example; BadExample when it is malformed."""
        fmt = self.options.format
        if fmt == "auto":
            if "messages" in record:
                fmt = "messages"
            elif "prompt" in record or "response" in record:
                fmt = "prompt_response"
            else:
                raise BadExample("missing_field", "expected a 'messages' field (chat) or 'prompt' and 'response' "
                                                  f"(has {', '.join(map(repr, record)) or 'none'})")
        if fmt == "messages":
            check_record(record, {"messages": list})
            messages = check_messages(record["messages"])
            return tokenize_segments(self.tokenizer, response_segments(self.template, messages))
        check_record(record, {"prompt": str, "response": str})
        tok = self.tokenizer
        prompt = ([tok.bos_id] if tok.bos_id is not None else []) + tok.encode(record["prompt"])
        response = tok.encode(record["response"]) + ([tok.eos_id] if tok.eos_id is not None else [])
        return prompt + response, [False] * len(prompt) + [True] * len(response)

    def encode(self, example: Example, skips: Skips, seq_len: int) -> Optional[Row]:
        """One example's row: inputs ``ids[:-1]``, targets ``ids[1:]`` with -100 outside the
        responses; ``too_long`` applied to examples of more than ``seq_len`` positions."""
        ids, is_response = self.tokens(example.record)
        if not any(is_response[1:]):
            raise BadExample("empty_response", "the response is empty (no token to train on); write a response")
        inputs = ids[:-1]
        targets = [token if scored else IGNORE for token, scored in zip(ids[1:], is_response[1:])]
        if len(inputs) > seq_len:
            what = (f"{len(ids)} tokens ({len(inputs)} positions), more than train.seq_len {seq_len}")
            if self.options.too_long == "error":
                raise DataError(f"{example.where}: the example is {what}: raise train.seq_len (up to "
                                "model.max_seq_len), shorten the example, or set task.options.too_long to skip "
                                "or truncate")
            if self.options.too_long == "skip":
                skips.add("too_long", example.where, f"the example is {what}")
                return None
            inputs, targets = inputs[:seq_len], targets[:seq_len]
            if all(t == IGNORE for t in targets):
                skips.add("too_long_no_response", example.where, f"the example is {what}, and its response "
                                                                 "starts after that")
                return None
        return {"inputs": inputs, "targets": targets, "num_tokens": len(inputs)}

    def read(self, path: str, key: str, seq_len: int) -> tuple[list[Row], Skips]:
        return read_split(path, key, {}, self.options.on_bad_example,
                          lambda example, skips: self.encode(example, skips, seq_len))

    def open_data(self, train: "TrainConfig", world: "World") -> ExampleData:
        check_paths(self.options)
        train_rows, train_skips = self.read(self.options.train_path, "task.options.train_path", train.seq_len)
        val_rows, val_skips = self.read(self.options.val_path, "task.options.val_path", train.seq_len)
        notes = []
        if self.options.packing:
            packed = pack(train_rows, train.seq_len)
            notes.append(f"{len(train_rows):,} train examples packed into {len(packed):,} rows")
            train_rows = packed
        return ExampleData(self, train_rows, val_rows, train, world, {"train": train_skips, "val": val_skips}, notes)

    # ------------------------------------------------------------------ batches

    def collate(self, rows: list[Row]) -> Batch:
        batch = {"inputs": pad_to([r["inputs"] for r in rows], self.tokenizer.pad_id),
                 "targets": pad_to([r["targets"] for r in rows], IGNORE)}
        if any("documents" in r for r in rows):
            batch["position_ids"] = pad_to([r.get("positions", list(range(len(r["inputs"])))) for r in rows], 0)
            batch["document_ids"] = pad_to([r.get("documents", [0] * len(r["inputs"])) for r in rows], PAD_DOCUMENT)
        return batch

    @staticmethod
    def model_inputs(batch: Batch) -> dict[str, torch.Tensor]:
        extra = {}
        if "document_ids" in batch:
            extra = {"position_ids_BT": batch["position_ids"], "document_ids_BT": batch["document_ids"]}
        return extra

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean next-token loss over the micro-batch's response tokens (the head's fused loss)."""
        return model(batch["inputs"], targets_BT=batch["targets"], **self.model_inputs(batch)), {}

    def measure(self, model: torch.nn.Module, batch: Batch) -> dict[str, Any]:
        logits_BTV = model(batch["inputs"], **self.model_inputs(batch))
        nats, count = token_loss_sum(logits_BTV, batch["targets"])
        correct, _ = masked_token_accuracy(logits_BTV, batch["targets"])
        return {"nats": float(nats), "tokens": count, "correct": int(correct)}

    def summarize(self, sums: dict[str, Any]) -> dict[str, float]:
        tokens = max(sums.get("tokens", 0), 1)
        return {"val_loss": sums.get("nats", 0.0) / tokens,
                "val_response_token_accuracy": sums.get("correct", 0) / tokens}

    def report(self, model: torch.nn.Module, tokens: np.ndarray, num_bytes: int, seq_len: int, batch_size: int,
               device: torch.device, precision: str) -> dict[str, float]:
        """An SFT model is a causal LM: loss, perplexity and bits per byte on token shards."""
        from lmforge.train.next_token_eval import loss_on_stream, summarize

        nats, count = loss_on_stream(model, tokens, seq_len, batch_size, device, precision)
        return summarize(nats, count, num_bytes)


def pack(rows: list[Row], seq_len: int) -> list[Row]:
    """Consecutive rows joined into rows of at most ``seq_len`` positions (a row starts a new
    one when it does not fit), each keeping its own positions (from 0) and document id."""
    packed: list[Row] = []
    current: Optional[Row] = None
    for row in rows:
        n = len(row["inputs"])
        if current is None or len(current["inputs"]) + n > seq_len:
            current = {"inputs": [], "targets": [], "positions": [], "documents": [], "num_tokens": 0}
            packed.append(current)
        document = current["documents"][-1] + 1 if current["documents"] else 0
        current["inputs"] += row["inputs"]
        current["targets"] += row["targets"]
        current["positions"] += list(range(n))
        current["documents"] += [document] * n
        current["num_tokens"] += n
    return packed
