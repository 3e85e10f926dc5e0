"""What the fine-tuning tasks share: the data-file options, reading both splits, padding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

import torch

from lmforge.config import option, path_text
from lmforge.errors import ConfigError, DataError
from lmforge.finetune.examples import ON_BAD_HELP, BadExample, Example, ExampleReader, Skips

if TYPE_CHECKING:
    from lmforge.config import ModelConfig

TOO_LONG_HELP = ("an example longer than train.seq_len: error (one line naming file:line), skip (dropped and "
                 "counted) or truncate (its end is cut off)")


@dataclass
class ExampleFileOptions:
    train_path: str = option("", "JSONL file of training examples (one JSON object per line)", check=path_text)
    val_path: str = option("", "JSONL file of validation examples, same fields as train_path", check=path_text)
    on_bad_example: Literal["error", "skip"] = option("error", ON_BAD_HELP)


class ExampleFileTask:
    """Base of the tasks that train on JSONL examples: no ids beyond the tokenizer's, FLOPs
    as the model's per-token figure, and no report over token shards."""

    extra_vocab = 0
    name: str

    def flops_per_token(self, model_cfg: "ModelConfig", seq_len: int) -> float:
        """6N + 12·L·H·K·T per token read (`models.flops_per_token`), T = ``seq_len``: rows
        are at most that long, so this is an upper bound for shorter ones."""
        from lmforge.models import flops_per_token

        return flops_per_token(model_cfg, seq_len)

    def report(self, model: torch.nn.Module, tokens: Any, num_bytes: int, seq_len: int, batch_size: int,
               device: torch.device, precision: str) -> dict[str, float]:
        raise ConfigError(f"task {self.name} measures itself on its JSONL val_path, not on token shards: the "
                          "run's summary.json holds its val figures")


def check_paths(options: ExampleFileOptions) -> None:
    for key in ("train_path", "val_path"):
        if not getattr(options, key):
            raise ConfigError(f"config key 'task.options.{key}': no file given; pass a JSONL file of examples")


def read_examples(path: str, key: str, fields: dict[str, Any], on_bad: str) -> tuple[list[Example], Skips]:
    """The examples of ``path`` with ``fields`` checked (a bad line is one DataError line or a
    counted skip) and the skips so far."""
    skips = Skips()
    return list(ExampleReader(on_bad, skips).read(path, fields, key)), skips  # type: ignore[arg-type]


def encode_examples(examples: list[Example], skips: Skips, on_bad: str, path: str, key: str,
                    encode: Callable[[Example, Skips], Any]) -> list[Any]:
    """Each example ``encode``d; one ``encode`` rejects (BadExample) is one DataError line or
    a counted skip; ``encode`` returns None for an example it dropped and counted itself
    (``too_long: skip``). DataError when nothing is left."""
    reader = ExampleReader(on_bad, skips)  # type: ignore[arg-type]
    out = []
    for example in examples:
        try:
            row = encode(example, skips)
        except BadExample as bad:
            reader.reject(example.where, bad)
            continue
        if row is not None:
            out.append(row)
    if not out:
        why = f" ({skips.describe()}: the first was {next(iter(skips.first.values()))})" if skips.total else ""
        raise DataError(f"config key '{key}': {path} has no usable examples{why}; check the file")
    return out


def read_split(path: str, key: str, fields: dict[str, Any], on_bad: str,
               encode: Callable[[Example, Skips], Any]) -> tuple[list[Any], Skips]:
    """`read_examples` then `encode_examples`: the rows of one JSONL file and its skips."""
    examples, skips = read_examples(path, key, fields, on_bad)
    return encode_examples(examples, skips, on_bad, path, key, encode), skips


def pad_to(rows: list[list[int]], value: int, length: int = 0) -> torch.Tensor:
    """``rows`` right-padded with ``value`` to the longest (or ``length``) as a (B, T) int64 tensor."""
    width = max([length] + [len(row) for row in rows])
    return torch.tensor([row + [value] * (width - len(row)) for row in rows], dtype=torch.long)


def label_key(value: Any) -> tuple[int, Any]:
    """Sort key of label values: integers in numeric order, then strings."""
    return (0, value) if isinstance(value, int) else (1, str(value))


def label_name(value: Any) -> str:
    return str(value)
