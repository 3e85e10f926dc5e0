"""Training tasks: batches are a pure function of (tokens, offsets, seed)."""

import numpy as np
import pytest
import torch

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.train.tasks import CausalLMTask, MaskedLMTask, task_for


class FakeTokenizer:
    bos_id, pad_id, eos_id, unk_id, mask_id = 0, 1, 2, 3, 4
    vocab_size = 50


TOKENS = np.arange(5, 45, dtype=np.uint16).repeat(3)  # 120 ordinary tokens


def test_causal_lm_batch_is_shifted_windows():
    batch = CausalLMTask().batch(TOKENS, np.array([0, 8]), 4, seed=0)
    assert batch["inputs"].tolist() == [TOKENS[0:4].tolist(), TOKENS[8:12].tolist()]
    assert batch["targets"].tolist() == [TOKENS[1:5].tolist(), TOKENS[9:13].tolist()]


def test_masked_lm_batch_depends_only_on_its_seed():
    task = MaskedLMTask(FakeTokenizer())
    offsets = np.array([0, 16, 32, 48])
    a, b = task.batch(TOKENS, offsets, 16, seed=7), task.batch(TOKENS, offsets, 16, seed=7)
    c = task.batch(TOKENS, offsets, 16, seed=8)
    assert torch.equal(a["inputs"], b["inputs"]) and torch.equal(a["labels"], b["labels"])
    assert not torch.equal(a["labels"], c["labels"])
    windows = torch.from_numpy(np.stack([TOKENS[o:o + 16] for o in offsets]).astype(np.int64))
    labelled = a["labels"] != -100
    assert labelled.any()
    assert torch.equal(a["labels"][labelled], windows[labelled])  # labels are the original tokens
    assert torch.equal(a["inputs"][~labelled], windows[~labelled])  # unselected tokens untouched


def test_task_for_unknown_family():
    cfg = ModelConfig(family="llama")
    assert isinstance(task_for(cfg, FakeTokenizer()), CausalLMTask)
    object.__setattr__(cfg, "family", "whisper")
    with pytest.raises(ConfigError, match="has no pretraining task"):
        task_for(cfg, FakeTokenizer())


def test_span_corruption_batch_shapes_and_sentinels():
    from lmforge.train.tasks import SpanCorruptionTask

    task = SpanCorruptionTask(FakeTokenizer(), vocab_size=FakeTokenizer.vocab_size + 100)
    raw = task.window_len(20)
    assert raw > 20
    tokens = np.arange(5, 45, dtype=np.uint16).repeat(4)
    batch = task.batch(tokens, np.array([0, raw]), 20, seed=3)
    assert batch["inputs"].shape[0] == 2 and batch["inputs"].shape[1] <= 20
    assert batch["labels"][:, 0].ge(task.first_sentinel).all()  # targets start with <extra_id_0>
    assert batch["decoder_inputs"][:, 0].eq(FakeTokenizer.pad_id).all()  # T5 starts decoding from pad
    assert torch.equal(batch["decoder_inputs"][:, 1:], batch["labels"][:, :-1])
    again = task.batch(tokens, np.array([0, raw]), 20, seed=3)
    assert torch.equal(again["labels"], batch["labels"])


def test_exact_span_accuracy_counts_whole_spans():
    from lmforge.train.tasks import SpanCorruptionTask

    vocab = FakeTokenizer.vocab_size + 100
    task = SpanCorruptionTask(FakeTokenizer(), vocab_size=vocab)
    s0, s1, s2, eos = vocab - 1, vocab - 2, vocab - 3, FakeTokenizer.eos_id
    labels = torch.tensor([[s0, 10, 11, s1, 12, s2, eos]])
    predicted = torch.tensor([[s0, 10, 11, s1, 13, s2, eos]])  # span 0 right, span 1 has a wrong token
    logits = torch.nn.functional.one_hot(predicted, vocab).float()
    exact, spans = task.exact_spans(logits, labels)
    assert (int(exact), int(spans)) == (1, 2)  # the closing sentinel opens no real span
