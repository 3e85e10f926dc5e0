"""The registered fine-tuning tasks (sft, sequence_classification, token_classification,
seq2seq): their rows and loss masks by hand, packing, bad input, exact resume, per-rank
slices, and a few optimiser steps lowering each task's loss on a toy dataset."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from helpers import randomise
from lmforge.config import ModelConfig, TokenizerConfig, TrainConfig
from lmforge.errors import CheckpointError, ConfigError, DataError
from lmforge.finetune.tasks.sft import SFTTask
from lmforge.models import build_model
from lmforge.models.presets import resolve_model_config
from lmforge.tokenize import train_tokenizer
from lmforge.train.parallel import World
from lmforge.train.tasks import TaskContext, build_task

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "what is two plus two", "four is the answer",
         "good great nice fine", "bad awful poor sad", "alice met bob in paris"] * 4
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def bpe():
    return train_tokenizer(TEXTS, TokenizerConfig(kind="byte_bpe", vocab_size=300, min_frequency=1))


@pytest.fixture(scope="module")
def wordpiece():
    return train_tokenizer(TEXTS, TokenizerConfig(kind="wordpiece", vocab_size=120, min_frequency=1))


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return str(path)


def model_cfg(family, tok, **overrides):
    return resolve_model_config(ModelConfig(family=family, vocab_size=tok.vocab_size, max_seq_len=64, dim=32,
                                            **{"num_layers": 2, "num_heads": 4, **overrides}))


def open_task(name, tok, cfg, tmp_path, train, val=None, seq_len=32, batch_size=2, grad_accum=1, world=World(),
              **options):
    paths = {"train_path": write_jsonl(tmp_path / "train.jsonl", train),
             "val_path": write_jsonl(tmp_path / "val.jsonl", train if val is None else val)}
    task = build_task(name, {**paths, **options}, TaskContext(tok, cfg))
    train_cfg = TrainConfig(seq_len=seq_len, batch_size=batch_size, grad_accum=grad_accum, seed=7)
    return task, task.open_data(train_cfg, world)


# --------------------------------------------------------------------------- sft


def test_sft_prompt_response_row_by_hand(bpe, tmp_path):
    _, data = open_task("sft", bpe, model_cfg("llama", bpe), tmp_path,
                        [{"prompt": "what is two plus two", "response": " four"}])
    prompt, response = bpe.encode("what is two plus two"), bpe.encode(" four")
    ids = [bpe.bos_id] + prompt + response + [bpe.eos_id]
    row = data.train_rows[0]
    assert row["inputs"] == ids[:-1]
    # the targets of positions 0..len(prompt)-1 are bos/prompt tokens' successors inside the prompt
    assert row["targets"] == [-100] * len(prompt) + response + [bpe.eos_id]
    batch = data.next_step()[0]  # one example, batch of 2: the same row twice
    assert batch["targets"].tolist() == [row["targets"]] * 2 and "document_ids" not in batch


def test_sft_batches_pad_inputs_and_ignore_padded_targets(bpe, tmp_path):
    task, data = open_task("sft", bpe, model_cfg("llama", bpe), tmp_path,
                           [{"prompt": "a", "response": " b"}, {"prompt": "the cat sat on", "response": " the mat"}])
    short, long = sorted(data.train_rows, key=lambda r: len(r["inputs"]))
    batch = task.collate([short, long])
    pad = len(long["inputs"]) - len(short["inputs"])
    assert batch["inputs"][0].tolist() == short["inputs"] + [bpe.pad_id] * pad
    assert batch["targets"][0].tolist() == short["targets"] + [-100] * pad


def per_example_losses(model, task, batch, rows_per_example):
    """Mean response-token loss of each example: ``rows_per_example`` lists (row, document) per example."""
    logits = model(batch["inputs"], **SFTTask.model_inputs(batch))
    nats = F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=-100,
                           reduction="none").view(batch["targets"].shape)
    out = []
    for row, document in rows_per_example:
        keep = (batch["targets"][row] != -100)
        if document is not None:
            keep &= batch["document_ids"][row] == document
        out.append(float(nats[row][keep].sum() / keep.sum()))
    return out


@pytest.mark.parametrize("family", ["llama", "gpt2"])  # RoPE and learned positions both restart per example
def test_packed_examples_have_the_loss_they_have_alone(bpe, tmp_path, family):
    examples = [{"prompt": "what is two plus two", "response": " four is the answer"},
                {"prompt": "the cat", "response": " sat on the mat"},
                {"messages": [{"role": "user", "content": "alice?"}, {"role": "assistant", "content": "met bob"}]}]
    cfg = model_cfg(family, bpe)
    task, packed = open_task("sft", bpe, cfg, tmp_path, examples, seq_len=64, packing=True)
    _, alone = open_task("sft", bpe, cfg, tmp_path, examples, seq_len=64)
    assert len(packed.train_rows) == 1 and packed.train_rows[0]["documents"][-1] == 2
    assert "3 train examples packed into 1 rows" in packed.describe()
    row = packed.train_rows[0]
    assert row["positions"] == [p for r in alone.train_rows for p in range(len(r["inputs"]))]
    model = randomise(build_model(cfg, "causal_lm"), seed=0, matrix_std=0.2, vector_std=0.1)
    with torch.no_grad():
        packed_losses = per_example_losses(model, task, task.collate([row]), [(0, d) for d in range(3)])
        alone_losses = per_example_losses(model, task, task.collate(alone.train_rows), [(i, None) for i in range(3)])
        # the test can tell: without document ids the later examples see the earlier ones
        leaky = task.collate([row])
        del leaky["document_ids"], leaky["position_ids"]
        leaky_logits = model(leaky["inputs"])
    assert packed_losses == pytest.approx(alone_losses, abs=1e-5)
    leaky_nats = F.cross_entropy(leaky_logits[0], leaky["targets"][0], ignore_index=-100, reduction="none")
    second = torch.tensor(row["documents"]) == 1
    leaky_second = float(leaky_nats[second & (leaky["targets"][0] != -100)].mean())
    assert abs(leaky_second - alone_losses[1]) > 1e-3


def test_packing_starts_a_new_row_when_an_example_does_not_fit(bpe, tmp_path):
    examples = [{"prompt": "the cat sat on the mat", "response": " a dog ran in the park"}] * 3
    _, data = open_task("sft", bpe, model_cfg("llama", bpe), tmp_path, examples, seq_len=40, packing=True)
    n = len(data.train_rows[0]["inputs"]) if len(data.train_rows) == 3 else None
    single = len(bpe.encode("the cat sat on the mat") + bpe.encode(" a dog ran in the park")) + 1
    assert single * 2 > 40 >= single  # one example per row fits, two do not
    assert len(data.train_rows) == 3 and n == single


def test_sft_too_long_is_an_error_naming_the_line_or_skipped_or_truncated(bpe, tmp_path):
    examples = [{"prompt": "a", "response": " b"}, {"prompt": "the cat sat on the mat", "response": " " + "fine " * 20}]
    cfg = model_cfg("llama", bpe)
    with pytest.raises(DataError, match=r"train\.jsonl:2: the example is \d+ tokens \(\d+ positions\), more than "
                                        r"train\.seq_len 16: .*too_long to skip or truncate"):
        open_task("sft", bpe, cfg, tmp_path, examples, seq_len=16)
    _, skipped = open_task("sft", bpe, cfg, tmp_path, examples, seq_len=16, too_long="skip")
    assert len(skipped.train_rows) == 1 and dict(skipped.skips["train"].counts) == {"too_long": 1}
    assert "train skipped 1 (1 too_long)" in skipped.describe()
    _, cut = open_task("sft", bpe, cfg, tmp_path, examples, seq_len=16, too_long="truncate")
    assert [len(r["inputs"]) for r in cut.train_rows] == [len(bpe.encode("a") + bpe.encode(" b")) + 1, 16]
    # a prompt that fills the context leaves no response: counted, not trained on
    long_prompt = [{"prompt": "the cat sat on the mat " * 5, "response": " b"}, examples[0]]
    _, cut = open_task("sft", bpe, cfg, tmp_path, long_prompt, seq_len=16, too_long="truncate")
    assert dict(cut.skips["train"].counts) == {"too_long_no_response": 1}


def test_bad_lines_are_one_error_naming_file_and_line_or_counted(bpe, tmp_path):
    good = {"prompt": "a", "response": " b"}
    cfg = model_cfg("llama", bpe)
    for bad, message in [("{oops", r"train\.jsonl:2: not valid JSON"),
                         ({"prompt": "a"}, r"train\.jsonl:2: no field 'response'"),
                         ({"prompt": "a", "response": 3}, r"train\.jsonl:2: field 'response' must be a string, got int"),
                         ({"text": "x"}, r"train\.jsonl:2: expected a 'messages' field"),
                         ("[1, 2]", r"train\.jsonl:2: expected a JSON object, got list")]:
        with pytest.raises(DataError, match=message):
            open_task("sft", bpe, cfg, tmp_path, [good, bad])
    with pytest.raises(DataError, match=r"train\.jsonl:1: field 'prompt' must be a string"):
        open_task("sft", bpe, cfg, tmp_path, [{"prompt": ["a"], "response": "b"}], format="prompt_response")
    _, data = open_task("sft", bpe, cfg, tmp_path, [good, "{oops", {"prompt": "a"}, "", {"prompt": 1, "response": ""}],
                        on_bad_example="skip")
    assert dict(data.skips["train"].counts) == {"bad_json": 1, "missing_field": 1, "wrong_type": 1}
    with pytest.raises(DataError, match=r"'task\.options\.train_path': .*train\.jsonl has no usable examples \(skipped "
                                        r"1 \(1 bad_json\): the first was .*train\.jsonl:1: not valid JSON"):
        open_task("sft", bpe, cfg, tmp_path, ["{oops"], on_bad_example="skip")


def test_missing_files_name_the_option(bpe, tmp_path):
    cfg = model_cfg("llama", bpe)
    task = build_task("sft", {"train_path": str(tmp_path / "nope.jsonl"), "val_path": "x"}, TaskContext(bpe, cfg))
    with pytest.raises(DataError, match=r"config key 'task\.options\.train_path': '.*nope\.jsonl' is not a file"):
        task.open_data(TrainConfig(), World())
    task = build_task("sft", {"train_path": "x"}, TaskContext(bpe, cfg))
    with pytest.raises(ConfigError, match=r"config key 'task\.options\.val_path': no file given"):
        task.open_data(TrainConfig(), World())
    with pytest.raises(ConfigError, match=r"task\.options\.too_long"):
        build_task("sft", {"too_long": "cut"}, TaskContext(bpe, cfg))


# --------------------------------------------------------------------------- classification

SENTIMENT = [{"text": "good great", "label": "pos"}, {"text": "bad awful", "label": "neg"},
             {"text": "nice fine", "label": "pos"}, {"text": "poor sad", "label": "neg"},
             {"text": "great nice good", "label": "pos"}, {"text": "sad bad poor", "label": "neg"}]


def test_sequence_classification_rows_labels_and_overrides(wordpiece, tmp_path):
    task, data = open_task("sequence_classification", wordpiece, model_cfg("bert", wordpiece), tmp_path, SENTIMENT,
                           seq_len=5)
    assert task.model_overrides() == {"num_labels": 2} and task.id2label() == {0: "neg", 1: "pos"}
    first = data.train_rows[0]
    assert first["inputs"] == wordpiece.frame(wordpiece.encode("good great")) and first["label"] == 1
    # the text is cut, not the frame: "great nice good" keeps bos ... eos within 5 positions
    cut = data.train_rows[4]["inputs"]
    assert len(cut) <= 5 and cut[0] == wordpiece.bos_id and cut[-1] == wordpiece.eos_id
    batch = task.collate([data.train_rows[0], data.train_rows[4]])
    assert batch["attention_mask"].tolist() == [[1] * len(first["inputs"]) + [0] * (len(cut) - len(first["inputs"])),
                                                [1] * len(cut)]
    assert batch["labels"].tolist() == [1, 1]
    assert data.tokens_per_step == round(sum(len(r["inputs"]) for r in data.train_rows) / 6 * 2)


def test_label_not_in_the_set_is_one_error_or_a_counted_skip(wordpiece, tmp_path):
    cfg = model_cfg("bert", wordpiece)
    val = SENTIMENT[:2] + [{"text": "so so", "label": "meh"}]
    with pytest.raises(DataError, match=r"val\.jsonl:3: label 'meh' is not in the label set \('neg', 'pos'; the "
                                        r"labels of .*train\.jsonl\); fix the example or add the label"):
        open_task("sequence_classification", wordpiece, cfg, tmp_path, SENTIMENT, val)
    _, data = open_task("sequence_classification", wordpiece, cfg, tmp_path, SENTIMENT, val, on_bad_example="skip")
    assert len(data.val_rows) == 2 and dict(data.skips["val"].counts) == {"unknown_label": 1}
    assert "val skipped 1 (1 unknown_label)" in data.describe()
    # an explicit label set fixes the ids (and checks the train file too)
    task, data = open_task("sequence_classification", wordpiece, cfg, tmp_path, SENTIMENT, labels=["pos", "neg", "x"])
    assert task.id2label() == {0: "pos", 1: "neg", 2: "x"} and data.train_rows[0]["label"] == 0
    with pytest.raises(DataError, match=r"train\.jsonl:2: label 'neg' is not in the label set \('pos'"):
        open_task("sequence_classification", wordpiece, cfg, tmp_path, SENTIMENT, labels=["pos", "other"])


def test_integer_labels_sort_numerically(wordpiece, tmp_path):
    examples = [{"text": "a", "label": 10}, {"text": "b", "label": 2}, {"text": "c", "label": 1}]
    task, _ = open_task("sequence_classification", wordpiece, model_cfg("bert", wordpiece), tmp_path, examples)
    assert task.id2label() == {0: "1", 1: "2", 2: "10"}


def test_token_classification_labels_the_first_sub_token_of_each_word(wordpiece, tmp_path):
    words = ["alice", "metbob", "in", "paris"]
    tags = ["B-PER", "O", "O", "B-LOC"]
    task, data = open_task("token_classification", wordpiece, model_cfg("bert", wordpiece), tmp_path,
                           [{"tokens": words, "tags": tags}])
    assert task.id2label() == {0: "B-LOC", 1: "B-PER", 2: "O"}
    pieces = [wordpiece.encode(w if i == 0 else " " + w) for i, w in enumerate(words)]
    assert len(pieces[1]) > 1  # "metbob" is split, so the -100 on its later pieces is tested
    ids = [i for p in pieces for i in p]
    row = data.train_rows[0]
    assert row["inputs"] == [wordpiece.bos_id] + ids + [wordpiece.eos_id]
    by_hand = [-100] + [label for p, tag in zip(pieces, [1, 2, 2, 0]) for label in [tag] + [-100] * (len(p) - 1)] \
        + [-100]
    assert row["labels"] == by_hand
    batch = task.collate([row, {**row, "inputs": row["inputs"][:3], "labels": row["labels"][:3]}])
    assert batch["labels"][1].tolist() == row["labels"][:3] + [-100] * (len(row["inputs"]) - 3)


def test_token_classification_bad_examples(wordpiece, tmp_path):
    cfg = model_cfg("bert", wordpiece)
    good = {"tokens": ["a", "b"], "tags": ["O", "X"]}
    with pytest.raises(DataError, match=r"train\.jsonl:2: 2 tokens but 1 tags; give one tag per word"):
        open_task("token_classification", wordpiece, cfg, tmp_path, [good, {"tokens": ["a", "b"], "tags": ["O"]}])
    with pytest.raises(DataError, match=r"val\.jsonl:1: tag 'Y' is not in the label set"):
        open_task("token_classification", wordpiece, cfg, tmp_path, [good], [{"tokens": ["a"], "tags": ["Y"]}])
    with pytest.raises(DataError, match=r"train\.jsonl:2: field 'tokens' must be a list of strings"):
        open_task("token_classification", wordpiece, cfg, tmp_path, [good, {"tokens": [1, 2], "tags": ["O", "O"]}])


# --------------------------------------------------------------------------- seq2seq


def test_seq2seq_batch_by_hand(bpe, tmp_path):
    examples = [{"input": "two plus two", "target": "four"}, {"input": "the cat", "target": "sat on the mat"}]
    task, data = open_task("seq2seq", bpe, model_cfg("t5", bpe), tmp_path, examples)
    a, b = data.train_rows
    assert a["inputs"] == bpe.encode("two plus two") + [bpe.eos_id]
    assert a["labels"] == bpe.encode("four") + [bpe.eos_id]
    batch = task.collate([a, b])
    pad = bpe.pad_id
    width = max(len(a["labels"]), len(b["labels"]))
    assert batch["labels"][0].tolist() == a["labels"] + [-100] * (width - len(a["labels"]))
    assert batch["decoder_inputs"][0].tolist() == ([pad] + a["labels"] + [pad] * width)[:width]
    assert batch["decoder_inputs"][1].tolist() == [pad] + b["labels"][:-1]
    assert batch["attention_mask"][0].tolist() == [1] * len(a["inputs"]) + [0] * (len(b["inputs"]) - len(a["inputs"]))


def test_seq2seq_too_long_target(bpe, tmp_path):
    examples = [{"input": "a", "target": "the cat sat on the mat"}]
    cfg = model_cfg("t5", bpe)
    with pytest.raises(DataError, match=r"train\.jsonl:1: the target is \d+ tokens \(eos included\), more than "
                                        r"task\.options\.max_target_len 3"):
        open_task("seq2seq", bpe, cfg, tmp_path, examples, max_target_len=3)
    _, data = open_task("seq2seq", bpe, cfg, tmp_path, examples, max_target_len=3, too_long="truncate")
    assert data.train_rows[0]["labels"] == bpe.encode("the cat sat on the mat")[:2] + [bpe.eos_id]


# --------------------------------------------------------------------------- data order, resume, ranks


def steps(data, n):
    return [[{k: v.clone() for k, v in b.items()} for b in data.next_step()] for _ in range(n)]


def same(a, b):
    return all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
               for sa, sb in zip(a, b, strict=True) for x, y in zip(sa, sb, strict=True))


def test_exact_resume_and_every_example_once_per_epoch(wordpiece, tmp_path):
    cfg = model_cfg("bert", wordpiece)
    examples = SENTIMENT[:5]
    _, data = open_task("sequence_classification", wordpiece, cfg, tmp_path, examples, batch_size=2)
    drawn = [i for _ in range(5) for i in data.next_indices()]  # 10 draws: two epochs of 5
    assert sorted(drawn[:5]) == sorted(drawn[5:]) == [0, 1, 2, 3, 4] and drawn[:5] != drawn[5:]
    _, a = open_task("sequence_classification", wordpiece, cfg, tmp_path, examples, batch_size=2)
    steps(a, 3)  # into the second epoch
    state = a.state_dict()
    assert state == {"epoch": 1, "position": 1, "seed": 7, "num_examples": 5}
    expected = steps(a, 4)
    _, b = open_task("sequence_classification", wordpiece, cfg, tmp_path, examples, batch_size=2)
    b.load_state_dict(json.loads(json.dumps(state)))  # as a checkpoint stores it
    assert same(steps(b, 4), expected)
    _, c = open_task("sequence_classification", wordpiece, cfg, tmp_path, examples[:4], batch_size=2)
    with pytest.raises(CheckpointError, match="trained on 5 train examples, the train file now gives 4"):
        c.load_state_dict(state)


def test_ranks_take_the_slices_of_one_global_batch(bpe, tmp_path):
    cfg = model_cfg("llama", bpe)
    examples = [{"prompt": f"{w} ", "response": w} for w in TEXTS[:7]]
    _, one = open_task("sft", bpe, cfg, tmp_path, examples, batch_size=1, grad_accum=2)
    ranks = [open_task("sft", bpe, cfg, tmp_path, examples, batch_size=1, world=World(rank=r, world_size=2))[1]
             for r in range(2)]
    for _ in range(5):
        micro = one.next_step()
        for r, data in enumerate(ranks):
            (batch,) = data.next_step()
            assert torch.equal(batch["inputs"], micro[r]["inputs"])


# --------------------------------------------------------------------------- training lowers the loss


def train_steps(task, data, model, num_steps=20, lr=1e-2):
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(num_steps):
        optimizer.zero_grad()
        for batch in data.next_step():
            loss, _ = task.loss(model, batch)
            loss.backward()
        optimizer.step()


@pytest.mark.slow
@pytest.mark.parametrize("name, family, examples", [
    ("sft", "llama", [{"prompt": "what is two plus two? ", "response": "four"},
                      {"messages": [{"role": "user", "content": "the cat"}, {"role": "assistant", "content": "sat"}]}]),
    ("sequence_classification", "bert", SENTIMENT),
    ("token_classification", "bert", [{"tokens": ["alice", "met", "bob"], "tags": ["PER", "O", "PER"]},
                                      {"tokens": ["in", "paris"], "tags": ["O", "LOC"]}]),
    ("seq2seq", "t5", [{"input": "two plus two", "target": "four"}, {"input": "the cat", "target": "sat"}]),
])
def test_a_few_steps_lower_the_loss(bpe, wordpiece, tmp_path, name, family, examples):
    tok = wordpiece if family == "bert" else bpe
    task, data = open_task(name, tok, model_cfg(family, tok), tmp_path, examples, batch_size=2)
    cfg = dataclasses.replace(model_cfg(family, tok, num_layers=1), **getattr(task, "model_overrides", dict)())
    torch.manual_seed(0)
    model = build_model(cfg, task.head)
    before = data.final_evaluation(model, CPU, "fp32")
    train_steps(task, data, model)
    after = data.final_evaluation(model, CPU, "fp32")
    assert after["val_loss"] < 0.5 * before["val_loss"], (before, after)
    accuracy = {"sft": "val_response_token_accuracy", "seq2seq": "val_token_accuracy"}.get(name, "val_accuracy")
    assert after[accuracy] == 1.0  # memorised
    if name == "seq2seq":
        assert after["val_exact_match"] == 1.0
    if "classification" in name:
        assert after["val_macro_f1"] == 1.0


# --------------------------------------------------------------------------- tokenizers as published


def test_published_llama3_template_and_bert_framing(tmp_path):
    """With a LLaMA-3-shaped tokenizer saved by transformers, an SFT chat row is the ids of
    transformers' apply_chat_template, loss on the reply and its <|eot_id|> only; with a
    BERT-shaped one, a classification input is [CLS] text [SEP]."""
    transformers = pytest.importorskip("transformers")
    from test_hf_real_checkpoints import MESSAGES, bert_like, llama3_like

    from lmforge.tokenize import load_hf_tokenizer as load_tokenizer

    directory = llama3_like(tmp_path / "llama3")
    tok, hf_tok = load_tokenizer(directory), transformers.AutoTokenizer.from_pretrained(str(directory))
    _, data = open_task("sft", tok, model_cfg("llama", tok), tmp_path, [{"messages": MESSAGES}], seq_len=64)
    row = data.train_rows[0]
    hf_ids = hf_tok.apply_chat_template(MESSAGES, tokenize=True)
    hf_ids = hf_ids["input_ids"] if isinstance(hf_ids, dict) or hasattr(hf_ids, "keys") else hf_ids
    assert row["inputs"] + [row["targets"][-1]] == list(hf_ids)
    reply = [t for t in row["targets"] if t != -100]
    assert tok.decode(reply, skip_special=False) == "Hi! How are you?<|eot_id|>"

    directory = bert_like(tmp_path / "bert")
    bert_tok = load_tokenizer(directory)
    _, data = open_task("sequence_classification", bert_tok, model_cfg("bert", bert_tok), tmp_path, SENTIMENT)
    cls, sep = bert_tok.token_to_id("[CLS]"), bert_tok.token_to_id("[SEP]")
    assert data.train_rows[0]["inputs"] == [cls] + bert_tok.encode("good great") + [sep]
