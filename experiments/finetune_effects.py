"""Measured effects of fine-tuning on tasks built from this Python's standard library (no download).

What it measures (issue 12, item 4), each effect a recipe in ``configs/finetune-*.yaml``, and
every comparison at the same data, steps, batch and seed:

- transfer (``finetune-transfer.yaml``): package-of-a-snippet classification (4 balanced
  classes) and token-role tagging, fine-tuned from a BERT pretrained by masked LM on the general
  corpus vs the same architecture trained from scratch: val accuracy of both.
- domain adaptation (``finetune-domain.yaml``): continued causal-LM pretraining of the general
  LLaMA-style model on English reference text (pydoc topics): domain val perplexity before and
  after, and general (code) val perplexity before and after (the forgetting), full and LoRA
  (Biderman et al. 2024, "LoRA Learns Less and Forgets Less").
- LoRA vs full vs QLoRA (``finetune-lora.yaml``) on the SFT task: val response loss, held-out
  format-following, trainable parameters, peak memory (``ru_maxrss`` of the child process that
  ran it, and its rise over the same process after imports) and training tokens/s.
- LLRD vs one learning rate (``finetune-llrd.yaml``) on the snippet classification: val accuracy
  of both (Clark et al. 2020 ELECTRA, layer-wise learning-rate decay).
- SFT (``finetune-sft.yaml``): the fraction of held-out prompts (functions from files no training
  example came from) whose greedy answer parses as the asked JSON form and names the function,
  before SFT (the base model) and after.

The data (``lmforge.finetune.stdlib_tasks.build_all``), one byte-level BPE tokenizer, token shards
of both corpora and the two base models (``configs/finetune-base-{llama,bert}.yaml``) are built
first under ``--root`` and reused when present. Each training run goes in a child process (so
its peak memory is its own) whose directory is named by a hash of its config: a run already
finished with the same config is reused, not retrained (so the single-LR arm of LLRD and the
fine-tuned arm of transfer, the same config, run once).

Rerun (2-core AMD EPYC VM: data 40 s; on a quiet machine the runs go at ~8k tokens/s and the
whole script takes ~15 minutes, on one shared with other jobs, load 4-7, it took ~70 minutes;
the figures measured are in experiments/finetune_effects.md):

    .venv/bin/python experiments/finetune_effects.py                   # everything
    .venv/bin/python experiments/finetune_effects.py --effects sft,lora  # some effects
    .venv/bin/python experiments/finetune_effects.py --fresh            # retrain everything

Prints one table per effect, then one line ``RESULTS {json}`` with every figure (also written
to ``ROOT/results.json``).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
EFFECTS = ("transfer", "domain", "lora", "llrd", "sft")
GENERAL_EVAL_TOKENS = 131_072  # general val perplexity over its first 128k tokens (whole documents)
FOLLOWING_PROMPTS = 100  # held-out SFT prompts graded (the val file is in a seeded random order)
SMOKE: dict[str, Any] = {}  # --smoke: every run 2 steps, 4 generation prompts (checks the script, no figures)


# ----------------------------------------------------------------------------- data and bases


def prepare(root: Path) -> dict[str, Any]:
    """The tasks' JSONL, the tokenizer (trained on the general train split only) and the token
    shards of both corpora, each built once."""
    from lmforge import config as C
    from lmforge.data import encode_documents
    from lmforge.finetune.stdlib_tasks import build_all
    from lmforge.tokenize.documents import train_tokenizer_on_documents

    manifest_path = root / "data" / "manifest.json"
    if not manifest_path.is_file():
        step(f"building the stdlib tasks and documents in {root / 'data'}")
        build_all(root / "data")
    manifest = json.loads(manifest_path.read_text())
    tokenizer_dir = root / "tokenizer"
    if not (tokenizer_dir / "tokenizer.json").is_file() and not any(tokenizer_dir.glob("*")):
        step("training the byte-level BPE tokenizer (2048) on the general train documents")
        train_tokenizer_on_documents(C.TokenizerConfig(kind="byte_bpe", vocab_size=2048, out_dir=str(tokenizer_dir),
                                                       input=str(root / "data/documents/general/train.jsonl")))
    for corpus in ("general", "domain"):
        out = root / "shards" / corpus
        if not (out / "meta.json").is_file():
            step(f"encoding the {corpus} documents into {out}")
            encode_documents(C.EncodeConfig(documents_dir=str(root / "data/documents" / corpus),
                                            tokenizer_dir=str(tokenizer_dir), out_dir=str(out)))
    return manifest


def step(message: str) -> None:
    print(f"\n== {message}", flush=True)


# ----------------------------------------------------------------------------- runs in child processes


def load_recipe(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))


def with_overrides(tree: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of a recipe tree with dotted keys set (``adapter.options.rank``: nested mappings)."""
    tree = copy.deepcopy(tree)
    for dotted, value in overrides.items():
        node = tree
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return tree


def rooted(tree: dict[str, Any], root: Path) -> dict[str, Any]:
    """Recipe paths are written for the default root ``runs/finetune-effects``: move them."""
    text = json.dumps(tree).replace("runs/finetune-effects", str(root))
    return json.loads(text)


def run_training(name: str, kind: str, tree: dict[str, Any], root: Path, run_dir: Optional[Path] = None) -> dict:
    """Train ``tree`` (a pretrain or finetune config as a mapping) in a child process, or reuse
    the result of the same config. Returns the child's record: summary, peak and after-import
    ``ru_maxrss`` in MiB, wall seconds, the run directory and the config."""
    tree = rooted(with_overrides(tree, SMOKE), root)
    # The starting model is part of the key: a retrained base (same path) gets new runs.
    source = Path(tree.get("train", {}).get("init_from") or "/nonexistent") / "summary.json"
    base = source.read_text() if source.is_file() else ""
    key = hashlib.sha256(json.dumps([kind, tree, base], sort_keys=True).encode()).hexdigest()[:10]
    run_dir = run_dir or root / "runs" / f"{name}-{key}"
    tree = with_overrides(tree, {"train.run_dir": str(run_dir)})
    result_path = run_dir / "result.json"
    if result_path.is_file():
        print(f"-- {name}: reusing {run_dir}", flush=True)
        return json.loads(result_path.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = run_dir / "spec.json"
    spec.write_text(json.dumps({"kind": kind, "config": tree, "result": str(result_path)}, indent=2))
    print(f"-- {name}: training in {run_dir}", flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", str(spec)], check=True)
    record = json.loads(result_path.read_text())
    print(f"-- {name}: {time.perf_counter() - started:.0f}s", flush=True)
    return record


def child(spec_path: str) -> None:
    """Run one training (the spec ``run_training`` wrote) and write its record."""
    import torch  # noqa: F401 (imported before the after-import memory reading)

    from lmforge import config as C
    from lmforge.finetune.run import finetune
    from lmforge.train.loop import pretrain

    spec = json.loads(Path(spec_path).read_text())
    after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    if spec["kind"] == "finetune":
        summary = finetune(C.build_config(C.FinetuneConfig, spec["config"]))
    else:
        summary = pretrain(C.build_config(C.PretrainConfig, spec["config"]))
    record = {"summary": summary, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "after_imports_rss_mib": after_imports, "wall_seconds": time.perf_counter() - started,
              "run_dir": spec["config"]["train"]["run_dir"], "config": spec["config"]}
    Path(spec["result"]).write_text(json.dumps(record, indent=2))


def base_model_fields(checkpoint: str) -> dict[str, Any]:
    """The model section of a checkpoint, for a from-scratch run of the same architecture."""
    from lmforge.train.checkpoint import latest_checkpoint, read_checkpoint_info

    path = Path(checkpoint)
    info = read_checkpoint_info(latest_checkpoint(path) if (path / "summary.json").exists() else path)
    model = info.model
    fields = model if isinstance(model, dict) else {k: getattr(model, k) for k in model.__dataclass_fields__}
    return {k: v for k, v in fields.items() if k not in ("preset",)}


# ----------------------------------------------------------------------------- measurements


def memoized(function):
    """Measurements of a finished checkpoint are kept in ``CHECKPOINT/../../measurements.json``
    (the run directory; keyed by the function and its arguments), so a rerun does not redo them."""

    def wrapper(checkpoint: str, data: Path, *args: Any) -> Any:
        store = Path(checkpoint).parents[1] / "measurements.json"
        memo = json.loads(store.read_text()) if store.is_file() else {}
        key = json.dumps([function.__name__, str(data), args, bool(SMOKE)])
        if key not in memo:
            memo[key] = function(checkpoint, data, *args)
            store.write_text(json.dumps(memo, indent=2))
        return memo[key]

    return wrapper


@memoized
def perplexity(checkpoint: str, shards: Path, max_tokens: int = 0) -> dict[str, float]:
    from lmforge import config as C
    from lmforge.evaluate import evaluate

    max_tokens = 4096 if SMOKE else max_tokens
    result = evaluate(C.EvaluateConfig(checkpoint=checkpoint, data=str(shards), split="val", seq_len=256,
                                       batch_size=8, max_tokens=max_tokens, device="cpu"))
    return {"perplexity": result["perplexity"], "loss": result["loss"], "tokens": result["tokens"]}


@memoized
def format_following(checkpoint: str, val_path: Path, max_new_tokens: int = 48) -> dict[str, Any]:
    """Greedy answers to the held-out SFT prompts, rendered as the sft task renders them
    (``[bos] + encode(prompt)``), graded by ``stdlib_tasks.grade_signature``: the fractions
    that parse as the asked form, name the function, and are exact."""
    import torch

    from lmforge.finetune.stdlib_tasks import grade_signature
    from lmforge.generate import generate
    from lmforge.train.checkpoint import load_checkpoint

    model, tokenizer, _ = load_checkpoint(checkpoint, torch.device("cpu"))
    examples = [json.loads(line) for line in val_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    examples = examples[:4] if SMOKE else examples[:FOLLOWING_PROMPTS]
    counts = {"valid": 0, "name": 0, "exact": 0}
    samples = []
    for example in examples:
        ids = ([tokenizer.bos_id] if tokenizer.bos_id is not None else []) + tokenizer.encode(example["prompt"])
        out: list[int] = []
        for token_B in generate(model, torch.tensor([ids]), max_new_tokens, temperature=0.0, eos_id=tokenizer.eos_id):
            token = int(token_B[0])
            if token == tokenizer.eos_id:
                break
            out.append(token)
        text = tokenizer.decode(out)
        grade = grade_signature(text, example["response"])
        for k in counts:
            counts[k] += grade[k]
        if len(samples) < 3:
            samples.append({"expected": example["response"], "generated": text})
    n = len(examples)
    return {"prompts": n, **{f"{k}_fraction": v / n for k, v in counts.items()}, "samples": samples}


# ----------------------------------------------------------------------------- the effects


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 100 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    cells = [header] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n### {title}")
    for i, r in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def small_train_file(root: Path, task: str, per_label: int) -> str:
    """The first ``per_label`` examples of each label of a classification train file (already
    in a seeded order): the same task with little labelled data, where pretraining should count most."""
    source = root / "data" / task / "train.jsonl"
    target = root / "data" / task / f"train_{per_label}_per_label.jsonl"
    if not target.is_file():
        counts: dict[str, int] = {}
        kept = []
        for line in source.read_text(encoding="utf-8").splitlines():
            label = json.loads(line)["label"]
            if counts.get(label, 0) < per_label:
                counts[label] = counts.get(label, 0) + 1
                kept.append(line)
        target.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return str(target).replace(str(root), "runs/finetune-effects", 1)


def effect_transfer(root: Path, bert: dict) -> dict[str, Any]:
    recipe = load_recipe("finetune-transfer.yaml")
    scratch_model = base_model_fields(bert["run_dir"])
    results: dict[str, Any] = {}
    rows = []
    setups = [("sequence_classification", f"runs/finetune-effects/data/sequence_classification/train.jsonl"),
              ("sequence_classification", small_train_file(root, "sequence_classification", 64)),
              ("token_classification", "runs/finetune-effects/data/token_classification/train.jsonl")]
    for task, train_path in setups:
        num_train = sum(1 for line in (root / train_path.replace("runs/finetune-effects/", "", 1)).open() if line.strip())
        name = task if train_path.endswith("/train.jsonl") else f"{task}-{num_train}"
        tree = with_overrides(recipe, {"task.name": task, "task.options.train_path": train_path,
                                       "task.options.val_path": f"runs/finetune-effects/data/{task}/val.jsonl"})
        tuned = run_training(f"transfer-{name}-pretrained", "finetune", tree, root)
        scratch_tree = {k: v for k, v in tree.items() if k != "adapter"}
        scratch_tree = with_overrides(scratch_tree, {"train.init_from": "", "model": scratch_model,
                                                     "train.tokenizer_dir": "runs/finetune-effects/tokenizer"})
        scratch = run_training(f"transfer-{name}-scratch", "pretrain", scratch_tree, root)
        results[name] = {arm: {"val_accuracy": r["summary"]["val_accuracy"], "val_loss": r["summary"]["val_loss"],
                               "val_macro_f1": r["summary"].get("val_macro_f1"), "steps": r["summary"]["steps"],
                               "train_examples": num_train}
                         for arm, r in (("pretrained", tuned), ("scratch", scratch))}
        for arm in ("pretrained", "scratch"):
            r = results[name][arm]
            rows.append([task, num_train, arm, r["steps"], r["val_accuracy"], r["val_loss"]])
    table("transfer: masked-LM-pretrained BERT vs the same BERT from scratch (same steps, data, seed)",
          ["task", "train examples", "start", "steps", "val accuracy", "val loss"], rows)
    return results


def effect_domain(root: Path, llama: dict) -> dict[str, Any]:
    recipe = load_recipe("finetune-domain.yaml")
    base_ckpt = llama["summary"]["checkpoint"]
    before = {"domain": perplexity(base_ckpt, root / "shards/domain"),
              "general": perplexity(base_ckpt, root / "shards/general", GENERAL_EVAL_TOKENS)}
    results: dict[str, Any] = {"base": before}
    rows = [["base (general model)", "-", before["domain"]["perplexity"], before["general"]["perplexity"]]]
    lora_options = load_recipe("finetune-lora.yaml")["adapter"]
    for arm, overrides in (("full", {}), ("lora", {"adapter": lora_options,
                                                   "optim.lr": load_recipe("finetune-lora.yaml")["optim"]["lr"]})):
        run = run_training(f"domain-{arm}", "finetune", with_overrides(recipe, overrides), root)
        ckpt = run["summary"]["checkpoint"]
        after = {"domain": perplexity(ckpt, root / "shards/domain"),
                 "general": perplexity(ckpt, root / "shards/general", GENERAL_EVAL_TOKENS),
                 "trainable_params": run["summary"]["trainable_params"], "steps": run["summary"]["steps"]}
        results[arm] = after
        rows.append([f"adapted, {arm}", after["trainable_params"], after["domain"]["perplexity"],
                     after["general"]["perplexity"]])
    table(f"domain adaptation: general (code) model -> English reference text (pydoc topics); "
          f"val perplexity ({before['domain']['tokens']:,} domain tokens, {before['general']['tokens']:,} general)",
          ["model", "trainable params", "domain ppl", "general ppl (forgetting)"], rows)
    return results


def sft_runs(root: Path) -> dict[str, dict]:
    """The SFT recipe fully, with LoRA and with QLoRA (the LoRA recipe's adapter and lr)."""
    sft = load_recipe("finetune-sft.yaml")
    lora = load_recipe("finetune-lora.yaml")
    qlora_adapter = with_overrides(lora["adapter"], {"options.quantize_base": "nf4"})
    return {"full": run_training("sft-full", "finetune", sft, root),
            "lora": run_training("sft-lora", "finetune", lora, root),
            "qlora": run_training("sft-qlora", "finetune", with_overrides(lora, {"adapter": qlora_adapter}), root)}


def effect_lora(root: Path, runs: dict[str, dict], following: dict[str, dict]) -> dict[str, Any]:
    results = {}
    rows = []
    for arm, run in runs.items():
        s = run["summary"]
        results[arm] = {"val_loss": s["val_loss"], "val_response_token_accuracy": s.get("val_response_token_accuracy"),
                        "name_fraction": following[arm]["name_fraction"], "valid_fraction": following[arm]["valid_fraction"],
                        "trainable_params": s["trainable_params"], "num_params": s["num_params"],
                        "peak_rss_mib": run["peak_rss_mib"], "after_imports_rss_mib": run["after_imports_rss_mib"],
                        "training_rss_rise_mib": run["peak_rss_mib"] - run["after_imports_rss_mib"],
                        "tokens_per_second": s["tokens_per_second"], "steps": s["steps"],
                        "lr": run["config"]["optim"]["lr"]}
        r = results[arm]
        rows.append([arm, r["lr"], r["val_loss"], r["valid_fraction"], r["name_fraction"], r["trainable_params"],
                     r["peak_rss_mib"], r["training_rss_rise_mib"], r["tokens_per_second"]])
    table("LoRA vs full fine-tuning vs QLoRA on the SFT task (same data, steps, batch, seed)",
          ["method", "lr", "val loss", "valid JSON", "right name", "trainable params", "peak RSS MiB",
           "rise over imports MiB", "train tokens/s"], rows)
    return results


def effect_llrd(root: Path) -> dict[str, Any]:
    recipe = load_recipe("finetune-llrd.yaml")
    decay = recipe["optim"]["layer_lr_decay"]
    results = {}
    rows = []
    for arm, value in (("single_lr", 1.0), ("llrd", decay)):
        run = run_training(f"llrd-{arm}", "finetune", with_overrides(recipe, {"optim.layer_lr_decay": value}), root)
        s = run["summary"]
        results[arm] = {"layer_lr_decay": value, "val_accuracy": s["val_accuracy"], "val_loss": s["val_loss"],
                        "steps": s["steps"]}
        rows.append([arm, value, s["steps"], s["val_accuracy"], s["val_loss"]])
    table("LLRD vs a single learning rate (snippet -> package, pretrained BERT)",
          ["arm", "layer_lr_decay", "steps", "val accuracy", "val loss"], rows)
    return results


def effect_sft(root: Path, llama: dict, runs: dict[str, dict], following: dict[str, dict]) -> dict[str, Any]:
    rows = [[arm, f["prompts"], f["valid_fraction"], f["name_fraction"], f["exact_fraction"]]
            for arm, f in following.items()]
    table("SFT: held-out prompts (functions from unseen files) whose greedy answer is the asked JSON",
          ["model", "prompts", "valid JSON form", "+ right name", "+ right params"], rows)
    for arm, f in following.items():
        for sample in f["samples"][:2]:
            print(f"  {arm}: expected {sample['expected']}\n  {' ' * len(arm)}  got      {sample['generated']!r}")
    return {arm: {k: v for k, v in f.items() if k != "samples"} for arm, f in following.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="runs/finetune-effects")
    parser.add_argument("--effects", default=",".join(EFFECTS), help=f"comma-separated subset of {EFFECTS}")
    parser.add_argument("--fresh", action="store_true", help="delete ROOT/runs and the bases first")
    parser.add_argument("--smoke", action="store_true", help="2 steps per run: check the script end to end")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    root = Path(args.root)
    if args.smoke:
        SMOKE.update({"train.max_steps": 2, "train.eval_interval": 0, "train.eval_batches": 1})
    effects = [e for e in args.effects.split(",") if e]
    unknown = set(effects) - set(EFFECTS)
    if unknown:
        parser.error(f"unknown effects {sorted(unknown)}: choose from {', '.join(EFFECTS)}")
    if args.fresh:
        for sub in ("runs", "base-llama", "base-bert"):
            shutil.rmtree(root / sub, ignore_errors=True)
    started = time.perf_counter()
    manifest = prepare(root)
    results: dict[str, Any] = {"data": {name: {split: v["num_examples"] for split, v in splits.items()}
                                        for name, splits in manifest["tasks"].items()}}
    need_llama = {"domain", "lora", "sft"} & set(effects)
    need_bert = {"transfer", "llrd"} & set(effects)
    bases = {}
    if need_llama:
        bases["llama"] = run_training("base-llama", "pretrain", load_recipe("finetune-base-llama.yaml"), root,
                                      run_dir=root / "base-llama")
    if need_bert:
        bases["bert"] = run_training("base-bert", "pretrain", load_recipe("finetune-base-bert.yaml"), root,
                                     run_dir=root / "base-bert")
    results["bases"] = {name: {k: b["summary"].get(k) for k in ("steps", "val_loss", "val_accuracy",
                                                                 "val_bits_per_byte", "num_params")}
                        for name, b in bases.items()}
    if "transfer" in effects:
        results["transfer"] = effect_transfer(root, bases["bert"])
    if "domain" in effects:
        results["domain"] = effect_domain(root, bases["llama"])
    if {"lora", "sft"} & set(effects):
        runs = sft_runs(root)
        val_path = root / "data/sft/val.jsonl"
        following = {"base": format_following(bases["llama"]["summary"]["checkpoint"], val_path)}
        following.update({arm: format_following(run["summary"]["checkpoint"], val_path) for arm, run in runs.items()})
        if "lora" in effects:
            results["lora"] = effect_lora(root, runs, following)
        if "sft" in effects:
            results["sft"] = effect_sft(root, bases["llama"], {"full": runs["full"]},
                                        {"base": following["base"], "full": following["full"]})
    if "llrd" in effects:
        results["llrd"] = effect_llrd(root)
    results["total_seconds"] = time.perf_counter() - started
    (root / "results.json").write_text(json.dumps(results, indent=2))
    print("RESULTS " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
