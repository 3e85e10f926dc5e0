"""`lmforge finetune` from HF directories as `transformers` writes them: their own tokenizer and chat
template, half-precision and sharded weights, a model without a head; the adapter goes back to peft."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from lmforge.train import checkpoint as ckpt  # noqa: E402
from run_safety_helpers import run_cli  # noqa: E402
from test_hf_real_checkpoints import _bert_config, _llama_config, _save, bert_like, llama3_like  # noqa: E402
from lmforge.tokenize import load_hf_tokenizer  # noqa: E402

CHATS = [
    [{"role": "user", "content": f"What is {a} plus {b}?"}, {"role": "assistant", "content": f"{a + b}"}]
    for a in range(6) for b in range(4)
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _finetune_args(hf_dir, run, task, options, *extra):
    return ["finetune", "--train.init_from", hf_dir, "--train.run_dir", run, "--task.name", task,
            "--task.options", json.dumps(options), "--train.seq_len", "48", "--train.batch_size", "4",
            "--train.max_steps", "3", "--train.eval_interval", "0", "--train.device", "cpu",
            "--optim.warmup_steps", "0", *extra]


def test_sft_with_lora_on_an_hf_llama_and_its_chat_template_then_back_to_peft(tmp_path, capsys):
    tokenizer_dir = llama3_like(tmp_path / "tokenizer")
    vocab = load_hf_tokenizer(tokenizer_dir).vocab_size
    hf_dir = _save(transformers.LlamaForCausalLM(_llama_config(vocab)), tokenizer_dir, tmp_path / "llama",
                   torch.bfloat16, shard=True)
    data = {"train_path": _jsonl(tmp_path / "train.jsonl", [{"messages": m} for m in CHATS[:20]]),
            "val_path": _jsonl(tmp_path / "val.jsonl", [{"messages": m} for m in CHATS[20:]])}
    run = tmp_path / "sft"
    status, errors, out = run_cli(_finetune_args(hf_dir, run, "sft", data, "--adapter.name", "lora",
                                                 "--adapter.options", "{rank: 4, targets: [q_proj, k_proj, v_proj]}"),
                                  capsys)
    assert status == 0, errors
    assert f"initialised from {hf_dir}\n" in out  # a whole HF causal LM: nothing new, nothing dropped
    info = ckpt.read_checkpoint_info(ckpt.latest_checkpoint(run))
    assert info.tokenizer.kind == "pretrained" and info.base["path"] == str(hf_dir.resolve())
    model, tokenizer, _ = ckpt.load_checkpoint(run)
    assert tokenizer.chat_template is not None and "<|start_header_id|>" in tokenizer.chat_template

    status, errors, _ = run_cli(["convert", run, "--to", "peft", "--out_dir", tmp_path / "peft"], capsys)
    assert status == 0, errors
    peft = pytest.importorskip("peft")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    peft_model = peft.PeftModel.from_pretrained(hf_model, tmp_path / "peft").eval()
    ids_BT = torch.tensor([tokenizer.encode_template("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                                                     "What is 2 plus 3?<|eot_id|>")])
    with torch.no_grad():
        torch.testing.assert_close(peft_model(input_ids=ids_BT).logits, model(ids_BT), rtol=0, atol=1e-4)


def test_a_classifier_on_an_hf_bert_saved_without_a_head(tmp_path, capsys):
    tokenizer_dir = bert_like(tmp_path / "tokenizer")
    vocab = load_hf_tokenizer(tokenizer_dir).vocab_size
    hf_dir = _save(transformers.BertModel(_bert_config(vocab)), tokenizer_dir, tmp_path / "bert", torch.bfloat16)
    rows = [{"text": f"the {word} is here", "label": label} for word, label in
            [("cat", "animal"), ("dog", "animal"), ("car", "thing"), ("box", "thing")] * 4]
    data = {"train_path": _jsonl(tmp_path / "train.jsonl", rows), "val_path": _jsonl(tmp_path / "val.jsonl", rows[:4])}
    run = tmp_path / "cls"
    status, errors, out = run_cli(_finetune_args(hf_dir, run, "sequence_classification", data), capsys)
    assert status == 0, errors
    assert "(new: [classifier (x2)], dropped: [])" in out  # BertModel has the pooler, not the classifier
    info = ckpt.read_checkpoint_info(ckpt.latest_checkpoint(run))
    assert info.head.labels() == {0: "animal", 1: "thing"} and info.model.num_labels == 2
    status, errors, _ = run_cli(["convert", run, "--to", "hf", "--out_dir", tmp_path / "hf_cls"], capsys)
    assert status == 0, errors
    exported = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf_cls")
    assert exported.config.id2label == {0: "animal", 1: "thing"}
