"""`lmforge quickstart`: the whole ladder's first rung on the embedded corpus.

prepare (stdlib .py files) -> tokenizer (byte-level BPE) -> encode (token shards)
-> pretrain (configs/quickstart.yaml) -> evaluate (val bits/byte) -> generate (samples).
Everything lands in ``run_dir``; ``summary.json`` holds the headline figures.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from lmforge import config as C
from lmforge.errors import ConfigError

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def default_recipe() -> Path:
    path = REPO_CONFIGS / "quickstart.yaml"
    if not path.is_file():
        raise ConfigError(f"quickstart recipe {path} not found: pass --recipe with a pretrain YAML "
                          "(see configs/quickstart.yaml in the lmforge repository)")
    return path


def quickstart(cfg: C.QuickstartConfig) -> dict:
    from lmforge.data import encode_documents, prepare
    from lmforge.sample import TextSampler
    from lmforge.tokenize.documents import train_tokenizer_on_documents
    from lmforge.train.loop import pretrain

    run = Path(cfg.run_dir)
    started = time.perf_counter()

    def stage(name: str) -> None:
        print(f"\n== {name}  (+{time.perf_counter() - started:.0f}s)", flush=True)

    stage("prepare: standard-library .py files -> train/val documents")
    prep = C.PrepareConfig(source=C.SourceConfig(kind="stdlib", max_documents=cfg.max_documents),
                           out_dir=str(run / "documents"))
    stats = prepare(prep)
    print(f"read {stats['read']} = kept {stats['kept']} + skipped {sum(stats['skipped'].values())} "
          f"{dict(stats['skipped'])}")

    stage("tokenizer: byte-level BPE")
    tok_cfg = C.TokenizerConfig(kind="byte_bpe", input=str(run / "documents" / "train.jsonl"),
                                out_dir=str(run / "tokenizer"), vocab_size=cfg.vocab_size)
    tokenizer = train_tokenizer_on_documents(tok_cfg)
    print(f"{tokenizer.vocab_size} tokens, fingerprint {tokenizer.fingerprint()}")

    stage("encode: documents -> token shards")
    meta = encode_documents(C.EncodeConfig(documents_dir=prep.out_dir, tokenizer_dir=tok_cfg.out_dir,
                                           out_dir=str(run / "shards")))
    for split, info in meta["splits"].items():
        print(f"{split}: {info['num_docs']} docs, {info['num_tokens']:,} tokens, {info['num_bytes']:,} bytes")

    stage("pretrain")
    recipe = Path(cfg.recipe) if cfg.recipe else default_recipe()
    pre_cfg = C.load_config(C.PretrainConfig, recipe)
    pre_cfg = dataclasses.replace(pre_cfg, train=dataclasses.replace(
        pre_cfg.train, shards_dir=str(run / "shards"), tokenizer_dir=tok_cfg.out_dir, run_dir=str(run)))
    summary = pretrain(pre_cfg)

    stage("evaluate + generate")
    print(f"validation: loss {summary['val_loss']:.4f}, bits per byte {summary['val_bits_per_byte']:.4f} "
          f"({summary['val_tokens']:,} tokens)")
    sampler = TextSampler(summary["checkpoint"], pre_cfg.train.device)
    samples = []
    for index, prompt in enumerate(cfg.prompts):
        text = prompt + "".join(sampler.stream(prompt, cfg.max_new_tokens, temperature=0.7, top_k=50,
                                               seed=index))
        samples.append({"prompt": prompt, "text": text})
        print(f"--- sample {index + 1} (prompt {prompt!r})\n{text}")

    summary["samples"] = samples
    summary["total_seconds"] = time.perf_counter() - started
    (run / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"\nval_bits_per_byte {summary['val_bits_per_byte']:.4f}; total {summary['total_seconds']:.0f}s; "
          f"summary in {run / 'summary.json'}")
    return summary
