"""What sequence and token classification share: the label set, read lazily from the train
file, the model overrides (``num_labels``) and id -> label names, and framing with truncation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch

from lmforge.errors import ConfigError, TokenizerError
from lmforge.finetune.example_data import ExampleData, Row
from lmforge.finetune.examples import BadExample, Example, Skips
from lmforge.finetune.metrics import macro_f1
from lmforge.finetune.tasks.common import (ExampleFileTask, check_paths, encode_examples, label_key, pad_to,
                                           read_examples)
from lmforge.train.tasks.registry import Batch

if TYPE_CHECKING:
    from lmforge.config import TrainConfig
    from lmforge.train.parallel import World


class LabelSet:
    """Class names and their ids (the order of ``names``)."""

    def __init__(self, names: list[str], source: str) -> None:
        self.names, self.source = names, source
        self.ids = {name: index for index, name in enumerate(names)}

    def id(self, value: Any, what: str) -> int:
        """The class id of a label value (compared as text: 1 and "1" are one label);
        BadExample("unknown_label") when it is not in the set."""
        name = str(value)
        if name not in self.ids:
            shown = ", ".join(map(repr, self.names[:10])) + (", ..." if len(self.names) > 10 else "")
            raise BadExample("unknown_label", f"{what} {value!r} is not in the label set ({shown}; {self.source}); "
                                              "fix the example or add the label to task.options.labels")
        return self.ids[name]


class ClassifierTask(ExampleFileTask):
    """A BERT classification head trained on labelled JSONL. Subclasses say which fields an
    example has (`fields`), which label values it carries (`label_values`) and how it becomes
    a row (`encode`)."""

    def __init__(self, options: Any, tokenizer: Any) -> None:
        self.options, self.tokenizer = options, tokenizer
        self._train: Optional[tuple[list[Example], Skips]] = None
        self._labels: Optional[LabelSet] = None
        self.truncated = 0  # examples whose text was cut to fit train.seq_len

    @classmethod
    def build(cls, options: Any, context: Any) -> "ClassifierTask":
        return cls(options, context.tokenizer)

    def fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def label_values(self, record: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    def encode(self, example: Example, seq_len: int) -> Row:
        raise NotImplementedError

    # ------------------------------------------------------------------ labels

    def train_examples(self) -> tuple[list[Example], Skips]:
        if self._train is None:
            check_paths(self.options)
            self._train = read_examples(self.options.train_path, "task.options.train_path", self.fields(),
                                        self.options.on_bad_example)
        return self._train

    @property
    def labels(self) -> LabelSet:
        """``task.options.labels``, or the sorted set of the train file's labels (integers in
        numeric order, then strings)."""
        if self._labels is None:
            given = list(self.options.labels)
            if given:
                if len(set(given)) != len(given):
                    raise ConfigError(f"config key 'task.options.labels': {given} lists a label twice")
                self._labels = LabelSet(given, "task.options.labels")
            else:
                examples, _ = self.train_examples()
                values: dict[str, Any] = {}
                for example in examples:
                    try:
                        for value in self.label_values(example.record):
                            values.setdefault(str(value), value)
                    except BadExample:
                        pass  # reported when the example is encoded
                names = [str(v) for v in sorted(values.values(), key=label_key)]
                if len(names) < 2:
                    raise ConfigError(f"config key 'task.options.train_path': {self.options.train_path} has "
                                      f"{len(names)} distinct label(s); a classifier needs at least 2")
                self._labels = LabelSet(names, f"the labels of {self.options.train_path}")
        return self._labels

    def model_overrides(self) -> dict[str, Any]:
        """The head's size: ``{"num_labels": number of classes}``."""
        return {"num_labels": len(self.labels.names)}

    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels.names))

    # ------------------------------------------------------------------ data

    def open_data(self, train: "TrainConfig", world: "World") -> ExampleData:
        self.truncated = 0
        examples, train_skips = self.train_examples()
        rows = encode_examples(examples, train_skips, self.options.on_bad_example, self.options.train_path,
                               "task.options.train_path", lambda example, _: self.encode(example, train.seq_len))
        val_examples, val_skips = read_examples(self.options.val_path, "task.options.val_path", self.fields(),
                                                self.options.on_bad_example)
        val_rows = encode_examples(val_examples, val_skips, self.options.on_bad_example, self.options.val_path,
                                   "task.options.val_path", lambda example, _: self.encode(example, train.seq_len))
        notes = [f"{len(self.labels.names)} labels"]
        if self.truncated:
            notes.append(f"{self.truncated:,} examples truncated to train.seq_len {train.seq_len}")
        return ExampleData(self, rows, val_rows, train, world, {"train": train_skips, "val": val_skips}, notes)

    def framed(self, ids: list[int], seq_len: int) -> tuple[list[int], int, int]:
        """(the tokenizer's framing of ``ids`` cut to fit ``seq_len``, where ``ids`` start in it,
        how many of them were kept). The content is cut, not the frame, so [CLS]/[SEP] or
        bos/eos stay."""
        room = seq_len - len(self.tokenizer.frame([]))
        if room < 1:
            raise ConfigError(f"config key 'train.seq_len': {seq_len} leaves no room for text inside the "
                              "tokenizer's special tokens")
        if len(ids) > room:
            ids = ids[:room]
            self.truncated += 1
        out = self.tokenizer.frame(ids)
        for offset in range(len(out) - len(ids) + 1):
            if out[offset:offset + len(ids)] == ids:
                return out, offset, len(ids)
        raise TokenizerError("the tokenizer's frame() does not keep a sequence's ids together; "
                             "it cannot be used for classification")

    def collate(self, rows: list[Row]) -> Batch:
        inputs = pad_to([r["inputs"] for r in rows], self.tokenizer.pad_id)
        mask = pad_to([[1] * len(r["inputs"]) for r in rows], 0)
        return {"inputs": inputs, "attention_mask": mask, "labels": self.collate_labels(rows, inputs.shape[1])}

    def collate_labels(self, rows: list[Row], width: int) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch["inputs"], attention_mask_BT=batch["attention_mask"])


def classification_summary(sums: dict[str, Any], accuracy_key: str = "val_accuracy") -> dict[str, float]:
    """val_loss (mean per labelled item), accuracy and macro-F1 over every item measured."""
    count = max(sums.get("count", 0), 1)
    predictions, labels = sums.get("predictions", []), sums.get("labels", [])
    return {"val_loss": sums.get("nats", 0.0) / count, accuracy_key: sums.get("correct", 0) / count,
            "val_macro_f1": macro_f1(predictions, labels)}
