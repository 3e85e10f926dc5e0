"""Range checks at load: every option's value is checked where the config is built.

Per check kind (config.py, 'range checks'): refused and accepted values, with the exact one-line
message ``config key 'KEY': expected ALLOWED, got VALUE[ (REASON)]``; the cross-field memory
checks; the recipes in configs/ still load; and the one-line errors of the checks that need a
checkpoint (evaluate's seq_len) or that name the calling command's own options.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import typing
from pathlib import Path

import pytest

from lmforge import cli
from lmforge import config as C
from lmforge.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL_CONFIGS = [C.PrepareConfig, C.SourceConfig, C.CrawlConfig, C.DataRunConfig, C.DataOutputConfig,
               C.DataReportConfig, C.ClassifierTrainConfig, C.TokenizerConfig, C.EncodeConfig, C.ModelConfig,
               C.OptimConfig, C.TrainConfig, C.PretrainConfig, C.EvaluateConfig, C.GenerateConfig,
               C.ConvertConfig, C.QuickstartConfig]


def refused(cls, key: str, value, message: str) -> None:
    """Loading ``cls`` with ``key: value`` fails with exactly ``message`` (one line)."""
    with pytest.raises(ConfigError) as err:
        C.load_config(cls, None, {key: value})
    assert str(err.value) == message
    assert "\n" not in str(err.value)


def accepted(cls, key: str, value, expected=None):
    cfg = C.load_config(cls, None, {key: value})
    got = cfg
    for part in key.split("."):
        got = getattr(got, part)
    if expected is not None:
        assert got == expected
    return got


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("text, shown", [("nan", "nan"), (".nan", "nan"), ("NaN", "nan"), ("inf", "inf"),
                                         ("1e999", "inf"), ("-inf", "-inf"), ("-.inf", "-inf"), ("0", "0.0"),
                                         ("-1e-3", "-0.001")])
def test_positive_float_refuses_nan_infinities_zero_and_negatives(text, shown):
    refused(C.PretrainConfig, "optim.lr", text,
            f"config key 'optim.lr': expected a positive finite number, got {shown}")


def test_every_float_is_finite():
    refused(C.PretrainConfig, "model.norm_eps", ".nan", "config key 'model.norm_eps': expected a positive finite "
                                                        "number, got nan")
    refused(C.PretrainConfig, "train.max_seconds", "inf", "config key 'train.max_seconds': expected a finite "
                                                          "number >= 0, got inf")
    refused(C.GenerateConfig, "temperature", "-inf", "config key 'temperature': expected a finite number >= 0, "
                                                     "got -inf")
    # an integer too large for any float is a type error, not a crash
    refused(C.PretrainConfig, "optim.lr", str(10**400), "config key 'optim.lr': expected a number, got "
            + repr(10**400)[:60] + "... (401 characters)")
    # a float option of a data step (built by the same loader) is finite too
    from lmforge.data.pipeline.plan import build_steps

    with pytest.raises(ConfigError, match=r"^config key 'steps\[0\]\.max_mean_word_length': expected a finite "
                                          r"number, got nan$"):
        build_steps([{"step": "gopher_quality", "max_mean_word_length": float("nan")}])


def test_positive_and_non_negative_integers():
    refused(C.PretrainConfig, "train.batch_size", "0", "config key 'train.batch_size': expected an integer >= 1, got 0")
    refused(C.PretrainConfig, "train.log_interval", "-5", "config key 'train.log_interval': expected an integer >= 1, "
                                                          "got -5")
    refused(C.PretrainConfig, "train.max_steps", "-1", "config key 'train.max_steps': expected an integer >= 0, got -1")
    refused(C.EvaluateConfig, "batch_size", "0", "config key 'batch_size': expected an integer >= 1, got 0")
    refused(C.GenerateConfig, "num_samples", "0", "config key 'num_samples': expected an integer >= 1, got 0")
    accepted(C.PretrainConfig, "train.batch_size", "1", 1)
    accepted(C.TrainConfig, "batch_size", str(10**6), 10**6)  # pretrain checks it against the memory
    for key in ("train.max_steps", "train.checkpoint_interval", "train.eval_interval", "train.max_rollbacks",
                "train.keep_last"):  # 0 means "no limit", "only at the end", "none" or "keep all"
        accepted(C.PretrainConfig, key, "0", 0)
    accepted(C.GenerateConfig, "max_new_tokens", "0", 0)
    accepted(C.GenerateConfig, "top_k", "0", 0)
    accepted(C.GenerateConfig, "temperature", "0", 0.0)  # greedy


def test_empty_text_for_a_number_is_reported_as_typed():
    refused(C.PretrainConfig, "optim.lr", "", "config key 'optim.lr': expected a number, got ''")
    refused(C.PretrainConfig, "train.max_steps", "", "config key 'train.max_steps': expected an integer, got ''")
    refused(C.PretrainConfig, "train.compile", " ", "config key 'train.compile': expected true or false, got ' '")


@pytest.mark.parametrize("cls, key, bad, good, allowed", [
    (C.PrepareConfig, "val_fraction", ["1", "1.5", "-0.1", "nan"], ["0", "0.999"], "a number in [0, 1)"),
    (C.DataRunConfig, "output.val_fraction", ["1"], ["0"], "a number in [0, 1)"),
    (C.ClassifierTrainConfig, "val_fraction", ["0", "1"], ["0.5"], "a number in (0, 1)"),
    (C.ClassifierTrainConfig, "threshold", ["-0.5", "1.01"], ["0", "1"], "a number in [0, 1]"),
    (C.GenerateConfig, "top_p", ["0", "1.5"], ["1", "0.01"], "a number in (0, 1]"),
    (C.PretrainConfig, "model.dropout", ["1", "-0.1"], ["0", "0.5"], "a number in [0, 1)"),
    (C.PretrainConfig, "optim.beta1", ["1"], ["0", "0.9"], "a number in [0, 1)"),
    (C.PretrainConfig, "optim.beta2", ["1.0", "2"], ["0.999"], "a number in [0, 1)"),
    (C.PretrainConfig, "optim.momentum", ["1"], ["0"], "a number in [0, 1)"),
    (C.PretrainConfig, "optim.min_lr_ratio", ["1.5", "-1"], ["0", "1"], "a number in [0, 1]"),
    (C.PretrainConfig, "optim.decay_fraction", ["2"], ["0", "1"], "a number in [0, 1]"),
    (C.PretrainConfig, "train.rollback_lr_factor", ["0", "1", "-0.5"], ["0.5"], "a number in (0, 1)"),
])
def test_intervals(cls, key, bad, good, allowed):
    for text in bad:
        shown = C._shown(float(C._parse_scalar(text)))  # 1 -> 1.0, nan -> nan
        refused(cls, key, text, f"config key '{key}': expected {allowed}, got {shown}")
    for text in good:
        accepted(cls, key, text, float(text))


def test_bounded_integers():
    refused(C.PretrainConfig, "train.seed", "-1", "config key 'train.seed': expected an integer from 0 to "
                                                  "9,223,372,036,854,775,807, got -1")
    refused(C.GenerateConfig, "seed", str(2**63), f"config key 'seed': expected an integer from 0 to "
                                                  f"9,223,372,036,854,775,807, got {2**63} (beyond a 64-bit integer)")
    # every integer reaches torch, numpy or a tokenizer as 64 bits at most
    refused(C.TokenizerConfig, "min_frequency", str(2**64), f"config key 'min_frequency': expected an integer >= 0, "
                                                            f"got {2**64} (beyond a 64-bit integer)")
    accepted(C.GenerateConfig, "seed", str(2**63 - 1), 2**63 - 1)
    refused(C.TokenizerConfig, "vocab_size", str(10**12), "config key 'vocab_size': expected an integer from 1 to "
                                                          "16,777,216, got 1000000000000")
    refused(C.QuickstartConfig, "vocab_size", "0", "config key 'vocab_size': expected an integer from 1 to "
                                                   "16,777,216, got 0")
    refused(C.ClassifierTrainConfig, "char_ngrams", "2", "config key 'char_ngrams': expected 0 (off) or an "
                                                         "integer >= 3, got 2")
    accepted(C.ClassifierTrainConfig, "char_ngrams", "0", 0)
    accepted(C.ClassifierTrainConfig, "char_ngrams", "3", 3)


# --------------------------------------------------------------------------- text


def test_user_agent_is_one_latin1_line():
    key = "source.crawl.user_agent"
    refused(C.PrepareConfig, key, "bot\r\nX-Evil: 1", f"config key '{key}': expected one line of Latin-1 text, "
                                                       f"got 'bot\\r\\nX-Evil: 1' (a line break or NUL in it)")
    refused(C.PrepareConfig, key, "bot ✓", f"config key '{key}': expected one line of Latin-1 text, got 'bot ✓' "
                                           f"(HTTP headers are Latin-1)")
    accepted(C.PrepareConfig, key, "bötli/1.0", "bötli/1.0")


def test_devices():
    available = C.available_devices()
    refused(C.PretrainConfig, "train.device", "banana", "config key 'train.device': expected auto, cpu, cuda, cuda:N "
                                                        f"or mps, got 'banana' (not a device name; this machine has "
                                                        f"{', '.join(available)})")
    refused(C.GenerateConfig, "device", "cuda:99", "config key 'device': expected auto, cpu, cuda, cuda:N or mps, "
                                                   f"got 'cuda:99' (this machine has only {', '.join(available)})")
    if "cuda" not in available:
        refused(C.EvaluateConfig, "device", "cuda", "config key 'device': expected auto, cpu, cuda, cuda:N or mps, "
                                                    f"got 'cuda' (this machine has only {', '.join(available)})")
    for name in available:
        accepted(C.EvaluateConfig, "device", name, name)


def test_nul_in_an_input_path():
    refused(C.PrepareConfig, "source.paths", ["ok", "a\x00b"], "config key 'source.paths[1]': expected a path, got "
                                                               "'a\\x00b' (it has a NUL byte)")
    refused(C.EvaluateConfig, "checkpoint", "\x00", "config key 'checkpoint': expected a path, got '\\x00' "
                                                    "(it has a NUL byte)")


# --------------------------------------------------------------------------- output paths

DIR = "a directory, or a path where one can be created"
FILE = "a file, or a path where one can be created"


@pytest.fixture
def places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("file.txt").write_text("x")
    os.mkfifo("fifo")
    Path("dir").mkdir()
    os.symlink("nowhere", "dangling")
    return tmp_path


@pytest.mark.parametrize("cls, key", [
    (C.PrepareConfig, "out_dir"), (C.TokenizerConfig, "out_dir"), (C.EncodeConfig, "out_dir"),
    (C.PretrainConfig, "train.run_dir"), (C.DataRunConfig, "output.dir"), (C.ConvertConfig, "out_dir"),
    (C.QuickstartConfig, "run_dir")])
def test_output_directories(places, cls, key):
    refused(cls, key, "file.txt", f"config key '{key}': expected {DIR}, got 'file.txt' (it is a file)")
    refused(cls, key, "fifo", f"config key '{key}': expected {DIR}, got 'fifo' (it is a FIFO)")
    refused(cls, key, "file.txt/sub", f"config key '{key}': expected {DIR}, got 'file.txt/sub' "
                                      f"('file.txt' in its path is a file)")
    refused(cls, key, "fifo/a/b", f"config key '{key}': expected {DIR}, got 'fifo/a/b' ('fifo' in its path is a FIFO)")
    refused(cls, key, "dangling/x", f"config key '{key}': expected {DIR}, got 'dangling/x' "
                                    f"('dangling' is a dangling symbolic link)")
    refused(cls, key, "x" * 300, f"config key '{key}': expected {DIR}, got '{'x' * 59}... (302 characters) "
                                 f"(File name too long)")
    accepted(cls, key, "dir", "dir")
    accepted(cls, key, "missing/parent/new", "missing/parent/new")  # creatable
    accepted(cls, key, str(places / "dir"))
    assert not Path("missing").exists()  # checking creates nothing


@pytest.mark.parametrize("cls, key", [(C.ClassifierTrainConfig, "out"), (C.DataReportConfig, "plot")])
def test_output_files(places, cls, key):
    refused(cls, key, "dir", f"config key '{key}': expected {FILE}, got 'dir' (it is a directory)")
    refused(cls, key, "fifo", f"config key '{key}': expected {FILE}, got 'fifo' (it is a FIFO)")
    refused(cls, key, "file.txt/model.npz", f"config key '{key}': expected {FILE}, got 'file.txt/model.npz' "
                                            f"('file.txt' in its path is a file)")
    accepted(cls, key, "file.txt", "file.txt")  # replaced
    accepted(cls, key, "new/dir/out.bin", "new/dir/out.bin")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_output_directory_in_a_read_only_parent(places):
    Path("ro").mkdir(mode=0o500)
    refused(C.PrepareConfig, "out_dir", "ro/new", f"config key 'out_dir': expected {DIR}, got 'ro/new' "
                                                  f"('ro' in its path is not writable)")


# --------------------------------------------------------------------------- memory


def test_a_model_that_cannot_fit_in_memory_is_refused_at_load():
    with pytest.raises(ConfigError) as err:
        C.load_config(C.PretrainConfig, None, {"model.dim": "100000000000"})
    message = str(err.value)
    assert re.fullmatch(r"config key 'model': the fp32 weights of this llama model \(4\.8e\+23 parameters\) need "
                        r"about \S+ TiB, more than this machine's [\d.,]+ GiB of memory: make it smaller "
                        r"\(model\.dim, model\.num_layers, model\.vocab_size, \.\.\.\)", message), message
    with pytest.raises(ConfigError, match="^config key 'model': the fp32 weights"):
        C.load_config(C.ModelConfig, None, {"num_layers": str(10**12)})
    # a long context costs RoPE tables even in a small model
    with pytest.raises(ConfigError, match=r"^config key 'model': the fp32 weights of this llama model "
                                          r"\(3\.21e\+06 parameters\) and RoPE tables for "
                                          r"1,152,921,504,606,846,976 positions need about"):
        C.load_config(C.ModelConfig, None, {"max_seq_len": str(2**60)})


def test_training_state_per_parameter_depends_on_the_optimiser(monkeypatch):
    monkeypatch.setattr(C, "physical_memory", lambda: 32 * 2**20)  # 32 MiB
    small = {"model.preset": "llama-tiny"}  # 131k parameters: 2 MiB of Adam state
    assert C.load_config(C.PretrainConfig, None, small).model.dim == 64
    quick = {"model.preset": "llama-quickstart", "model.vocab_size": "4096"}  # 4M parameters
    with pytest.raises(ConfigError, match=r"^config key 'model': the fp32 weights, gradients and two adamw moments "
                                          r"of this llama model \(4e\+06 parameters\) need about 61\.1 MiB, more "
                                          r"than this machine's 32\.0 MiB of memory"):
        C.load_config(C.PretrainConfig, None, quick)
    with pytest.raises(ConfigError, match="fp32 weights, gradients and SGD momentum .* 45.8 MiB"):
        C.load_config(C.PretrainConfig, None, {**quick, "optim.name": "sgd"})
    # without momentum: weights and gradients, 30.5 MiB, fits
    C.load_config(C.PretrainConfig, None, {**quick, "optim.name": "sgd", "optim.momentum": "0"})
    monkeypatch.setattr(C, "physical_memory", lambda: None)  # the OS does not say: no check
    C.load_config(C.PretrainConfig, None, {"model.dim": "100000000000"})


def test_a_micro_batch_must_fit_in_memory():
    with pytest.raises(ConfigError, match=r"^config key 'train.batch_size': the activations of a micro-batch of "
                                          r"256,000,000,000,000 tokens \(at least\) need about [\d,.]+ TiB, more "
                                          r"than this machine's [\d.,]+ GiB of memory: lower train.batch_size or "
                                          r"train.seq_len$"):
        C.load_config(C.PretrainConfig, None, {"train.batch_size": str(10**12)})
    with pytest.raises(ConfigError, match=r"^config key 'train.grad_accum': the window offsets of an optimiser "
                                          r"step of 32,000,000,000,000 sequences need about"):
        C.load_config(C.PretrainConfig, None, {"train.grad_accum": str(2 * 10**12)})


def test_classifier_buckets_must_fit_in_memory():
    with pytest.raises(ConfigError, match=r"^config key 'num_buckets': 1,000,000,000,000 buckets \(two float64 "
                                          r"each\) need about 14\.6 TiB, more than this machine's"):
        C.load_config(C.ClassifierTrainConfig, None, {"num_buckets": str(10**12)})


def test_parameter_estimate_is_a_tight_lower_bound_for_every_preset():
    from lmforge.models.presets import PRESETS
    from lmforge.models.sizing import approx_parameters, count_parameters

    for name, values in PRESETS.items():
        cfg = C.ModelConfig(preset=name, vocab_size=values.get("vocab_size", 4096))
        estimate, exact = approx_parameters(cfg), count_parameters(cfg)
        assert 0.98 * exact <= estimate <= exact, name


# --------------------------------------------------------------------------- every field


def test_every_number_field_declares_its_range():
    """Every int and float field of every config in config.py has a check of its own (a float
    without one would still get ``finite``; an int would get nothing)."""
    for cls in ALL_CONFIGS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if hints[f.name] in (int, float):
                assert f.metadata.get("check") is not None, f"{cls.__name__}.{f.name} has no range check"


def test_every_default_passes_its_own_check(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for cls in ALL_CONFIGS:
        C.load_config(cls, None, {})


@pytest.mark.parametrize("recipe", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_loads(recipe):
    from lmforge.sweep import SweepConfig
    from test_config import recipe_class

    cls = (C.DataRunConfig if recipe.name.startswith("data-") else
           C.ClassifierTrainConfig if recipe.name.startswith("classifier-") else
           SweepConfig if recipe.name.startswith("sweep-") else recipe_class(recipe))
    C.load_config(cls, recipe)


def test_help_shows_the_allowed_range(capsys):
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "sequences per micro-batch (per process) [an integer >= 1; default 16]" in out
    assert "[a positive finite number; default 0.001]" in out
    assert "[a directory, or a path where one can be created; default 'runs/quickstart']" in out
    assert "[auto, cpu, cuda, cuda:N or mps; default 'auto']" in out


def test_a_binary_config_file_is_one_line(tmp_path, capsys):
    recipe = tmp_path / "model.bin"
    recipe.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    assert cli.main(["pretrain", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err == f"lmforge pretrain: error: config file '{recipe}' is not UTF-8 text (byte 0): pass a YAML recipe " \
                  f"(see configs/)\n"


# --------------------------------------------------------------------------- checks at run time, one line


def test_os_errors_are_one_line_and_other_exceptions_stay_bugs(monkeypatch, capsys):
    def disk_full(cfg):
        raise OSError(errno.ENOSPC, "No space left on device", "out/train.jsonl")

    monkeypatch.setitem(cli.VERBS, "prepare", dataclasses.replace(cli.VERBS["prepare"], run=disk_full))
    assert cli.main(["prepare"]) == 2
    assert capsys.readouterr().err == ("lmforge prepare: error: No space left on device: 'out/train.jsonl' "
                                       "(check the path, free space or permissions)\n")

    def bug(cfg):
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli.VERBS, "prepare", dataclasses.replace(cli.VERBS["prepare"], run=bug))
    with pytest.raises(RuntimeError):
        cli.main(["prepare"])


@pytest.fixture(scope="module")
def finished_run(tiny_run, tmp_path_factory):
    from conftest import tiny_pretrain_config
    from lmforge.train.loop import pretrain

    run = tmp_path_factory.mktemp("ranges") / "run"
    pretrain(tiny_pretrain_config(tiny_run, run, max_steps=2, eval_interval=0, eval_batches=1))
    return run


def test_evaluate_seq_len_beyond_the_model_is_one_line(finished_run, tiny_run, capsys):
    code = cli.main(["evaluate", str(finished_run), "--data", str(tiny_run["shards"]), "--seq_len", "100000",
                     "--device", "cpu"])
    assert code == 2
    assert capsys.readouterr().err == ("lmforge evaluate: error: config key 'seq_len': expected at most the model's "
                                       "max_seq_len 32 (or 0 for it), got 100000\n")
    assert cli.main(["evaluate", str(finished_run), "--data", str(tiny_run["shards"]), "--batch_size", "0"]) == 2
    assert capsys.readouterr().err == ("lmforge evaluate: error: config key 'batch_size': expected an integer >= 1, "
                                       "got 0\n")


def test_generate_with_no_new_tokens_prints_the_prompt(finished_run, capsys):
    assert cli.main(["generate", str(finished_run), "--prompt", "def ", "--max_new_tokens", "0",
                     "--device", "cpu"]) == 0
    assert capsys.readouterr().out == "def \n"


def test_errors_name_the_commands_own_options(finished_run, tmp_path, capsys):
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"text\x00more")
    assert cli.main(["evaluate", str(finished_run), "--data", str(binary), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err == f"lmforge evaluate: error: {binary} looks binary (it has NUL bytes): pass another file to --data\n"

    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"body": "no text field"}\n')
    assert cli.main(["tokenizer", "--input", str(docs), "--out_dir", str(tmp_path / "tok")]) == 2
    err = capsys.readouterr().err
    assert err == f"lmforge tokenizer: error: {docs}:1 has no string field 'text' (found: body)\n"

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert cli.main(["data", "run", "--input.paths", str(fifo), "--steps", "{step: clean}",
                     "--output.dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == (f"lmforge data run: error: '{fifo}' is not a regular file or a directory (a FIFO, a device, "
                   f"a broken link?): point --input.paths at files\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert cli.main(["prepare", "--source.kind", "jsonl", "--source.paths", str(bad),
                     "--out_dir", str(tmp_path / "docs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lmforge prepare: error: {bad}:1 is not valid JSON")
    assert err.endswith(": fix the line, or set on_error: skip (--source.on_error skip)\n")


def test_t5_generation_refuses_a_decoder_cache_beyond_memory():
    import torch

    from lmforge.generate import generate_seq2seq
    from lmforge.models import build_model
    from lmforge.models.presets import resolve_model_config

    model = build_model(resolve_model_config(C.ModelConfig(preset="t5-tiny")))
    with pytest.raises(ConfigError, match=r"^config key 'max_new_tokens': the decoder key/value caches for "
                                          r"1,000,000,000,000 new tokens need about [\d.,]+ TiB, more than this "
                                          r"machine's [\d.,]+ GiB of memory: lower max_new_tokens$"):
        next(generate_seq2seq(model, torch.tensor([[5, 6, 7]]), 10**12))


def test_at_least():
    refused(C.PretrainConfig, "model.relative_attention_num_buckets", "3",
            "config key 'model.relative_attention_num_buckets': expected an integer >= 4, got 3")
    accepted(C.PretrainConfig, "model.relative_attention_num_buckets", "4", 4)


def test_classifier_divergence_is_one_line(tmp_path, capsys):
    import json

    data = tmp_path / "labelled.jsonl"
    data.write_text("".join(json.dumps({"text": f"{w} item {i}", "label": int(w == "spam")}) + "\n"
                            for i in range(20) for w in ("spam", "ham")))
    code = cli.main(["data", "train-classifier", "--data", str(data), "--out", str(tmp_path / "m.npz"),
                     "--lr", "1e300", "--l2", "1e300"])
    assert code == 2
    assert capsys.readouterr().err == ("lmforge data train-classifier: error: config keys 'lr', 'l2': training "
                                       "diverged with lr 1e+300 and l2 1e+300 (the weights overflowed float32): "
                                       "lower --lr or --l2\n")
