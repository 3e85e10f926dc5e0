"""Training tasks: the registry, options checked like configs, batches a pure function of (tokens, offsets, seed)."""

import numpy as np
import pytest
import torch

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.train.tasks import (CausalLMTask, MaskedLMTask, SpanCorruptionTask, TaskContext, build_task,
                                 registered_tasks)


class FakeTokenizer:
    bos_id, pad_id, eos_id, unk_id, mask_id = 0, 1, 2, 3, 4
    special_ids = frozenset(range(5))
    vocab_size = 50

    def require_id(self, role: str, needed_for: str) -> int:
        return getattr(self, f"{role}_id")


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


def test_the_pretraining_and_fine_tuning_tasks_are_registered_with_their_options():
    tasks = registered_tasks()
    assert list(tasks) == ["causal_lm", "masked_lm", "seq2seq", "sequence_classification", "sft", "span_corruption", "token_classification"]
    assert tasks["span_corruption"].cls.extra_vocab == SpanCorruptionTask.NUM_SENTINELS == 100
    assert tasks["causal_lm"].cls.extra_vocab == tasks["masked_lm"].cls.extra_vocab == 0
    context = TaskContext(FakeTokenizer(), ModelConfig(family="bert", vocab_size=FakeTokenizer.vocab_size))
    task = build_task("masked_lm", {"mask_prob": 0.3}, context)
    assert isinstance(task, MaskedLMTask) and task.mask_prob == 0.3 and task.name == "masked_lm"
    assert build_task("causal_lm", {"fused_loss": False}, context).fused_loss is False
    t5 = ModelConfig(family="t5", vocab_size=FakeTokenizer.vocab_size + 100)
    span = build_task("span_corruption", {"noise_density": 0.3}, TaskContext(FakeTokenizer(), t5))
    assert (span.noise_density, span.mean_span_length) == (0.3, 3.0)
    assert span.window_len(20) > SpanCorruptionTask(FakeTokenizer(), t5.vocab_size).window_len(20)  # more noise


@pytest.mark.parametrize("name, options, message", [
    ("masked_lm", {"mask_prob": 1.5}, "config key 'task.options.mask_prob': expected a number in (0, 1), got 1.5"),
    ("masked_lm", {"mask_pro": 0.2}, "unknown config key 'task.options.mask_pro': MaskedLMOptions has mask_prob"),
    ("causal_lm", {"fused_loss": "yes"}, "config key 'task.options.fused_loss': expected true or false, got 'yes'"),
    ("span_corruption", {"mean_span_length": 0.5}, "config key 'task.options.mean_span_length': expected a finite "
                                                  "number >= 1, got 0.5"),
    ("causal_lm", [1], "config key 'task.options': expected a mapping of causal_lm options, got [1]"),
    ("next_sentence", {}, "config key 'task.name': unknown task 'next_sentence'; choose one of causal_lm, "
                          "masked_lm, seq2seq, sequence_classification, sft, span_corruption, token_classification"),
])
def test_bad_task_names_and_options_are_one_line_naming_the_key(name, options, message):
    context = TaskContext(FakeTokenizer(), ModelConfig(vocab_size=FakeTokenizer.vocab_size + 100))
    with pytest.raises(ConfigError) as error:
        build_task(name, options, context)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_span_corruption_batch_shapes_and_sentinels():
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
    vocab = FakeTokenizer.vocab_size + 100
    task = SpanCorruptionTask(FakeTokenizer(), vocab_size=vocab)
    s0, s1, s2, eos = vocab - 1, vocab - 2, vocab - 3, FakeTokenizer.eos_id
    labels = torch.tensor([[s0, 10, 11, s1, 12, s2, eos]])
    predicted = torch.tensor([[s0, 10, 11, s1, 13, s2, eos]])  # span 0 right, span 1 has a wrong token
    logits = torch.nn.functional.one_hot(predicted, vocab).float()
    exact, spans = task.exact_spans(logits, labels)
    assert (int(exact), int(spans)) == (1, 2)  # the closing sentinel opens no real span


def test_a_task_the_model_family_has_no_head_for_is_one_line(tiny_run, tmp_path):
    from conftest import tiny_pretrain_config
    from lmforge.train.loop import pretrain

    cfg = tiny_pretrain_config(tiny_run, tmp_path / "run", **{"task.name": "masked_lm"})  # llama-tiny
    with pytest.raises(ConfigError, match=r"^config key 'task.name': task masked_lm trains a masked_lm head, which "
                                          r"model family llama does not have \(its heads: causal_lm\)"):
        pretrain(cfg)
