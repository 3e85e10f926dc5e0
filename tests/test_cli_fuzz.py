"""Hostile values for every option of every verb: no traceback reaches the user.

Each example picks one verb (``cli.VERBS`` and ``cli.DATA_VERBS``), one or two of its options
(``config.iter_fields``, plus ``--config``) and a hostile value for each: arbitrary text,
numbers in every spelling (nan, inf, 1e999, negatives, zero, 10**12, 10**30), an existing
file, a FIFO, a missing directory, a directory where a file is expected, an empty string.
The verb's other options point at a tiny fixture (conftest's ``tiny_run`` corpus, tokenizer
and shards, a finished two-step llama-tiny run, a data pipeline's output and a labelled
JSONL) with tiny budgets, so an accepted command finishes quickly. ``lmforge.cli.main`` runs
in this process (importing torch per subprocess would be too slow), with the working
directory a fresh copy of the fixture.

The contract: nothing escapes ``main``, it returns 0 or 2, and on 2 stderr ends with exactly
one line ``lmforge VERB: error: ...``; the only lines before it are the progress a command
printed once it had started work (pretrain's log: errors at load come alone). A command still
running after ``CASE_SECONDS`` is stopped (a private exception raised by SIGALRM) and counts
as running, not as a failure.

Safety: every value is made relative to the case directory (no leading '/' or '~', no
'..'), so nothing is written outside it; ``executor: ray`` is never chosen (it would start a
Ray instance, or connect to ``ray_address``); a crawl start URL that names a host other than
127.0.0.1 is replaced by one on the discard port of 127.0.0.1, and while the examples run
every connection and name lookup of a non-loopback host is refused and recorded (the test
fails if there was one). The number of cases and what became of them is printed at the end
(``pytest -s``). Derandomized, so a failure reproduces.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import time
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from lmforge import cli
from lmforge import config as C

CASE_SECONDS = 6.0  # a case still running after this long is stopped and counts as running
# More cases for a longer hunt: LMFORGE_FUZZ_EXAMPLES=2000 (and LMFORGE_FUZZ_SEED=N for other
# cases than the derandomized default's).
# 800 cases take about 50 s on 2 cores (2026-12, Intel Xeon KVM).
MAX_EXAMPLES = int(os.environ.get("LMFORGE_FUZZ_EXAMPLES", "800"))
FUZZ_SEED = os.environ.get("LMFORGE_FUZZ_SEED")

# Every command with options: its words and its config class.
COMMANDS: dict[tuple[str, ...], cli.Verb] = {
    **{(name,): verb for name, verb in cli.VERBS.items()},
    **{("data", name): verb for name, verb in cli.DATA_VERBS.items()},
}

# The options each command runs with unless the example picks them: the fixture and tiny
# budgets (values are relative to the case directory, a copy of the fixture).
BASE: dict[tuple[str, ...], dict[str, str]] = {
    ("prepare",): {"source.kind": "text", "source.paths": "corpus", "out_dir": "out", "val_fraction": "0.2"},
    ("tokenizer",): {"input": "documents/train.jsonl", "out_dir": "out", "vocab_size": "300"},
    ("encode",): {"documents_dir": "documents", "tokenizer_dir": "tokenizer", "out_dir": "out", "num_workers": "1"},
    ("pretrain",): {"model.preset": "llama-tiny", "model.max_seq_len": "32", "model.vocab_size": "0",
                    "train.shards_dir": "shards", "train.tokenizer_dir": "tokenizer", "train.run_dir": "out",
                    "train.seq_len": "32", "train.batch_size": "2", "train.max_steps": "2",
                    "train.max_seconds": "5", "train.eval_interval": "0", "train.eval_batches": "1",
                    "train.log_interval": "1", "train.device": "cpu"},
    ("evaluate",): {"checkpoint": "run", "data": "shards", "max_tokens": "256", "device": "cpu"},
    ("generate",): {"checkpoint": "run", "prompt": "def ", "max_new_tokens": "4", "device": "cpu"},
    ("convert",): {"source": "run", "to": "hf", "out_dir": "out"},
    ("finetune",): {"train.init_from": "run", "train.shards_dir": "shards", "train.run_dir": "out",
                    "train.seq_len": "32", "train.batch_size": "2", "train.max_steps": "2", "train.max_seconds": "5",
                    "train.eval_interval": "0", "train.eval_batches": "1", "train.log_interval": "1",
                    "train.device": "cpu"},
    ("sweep",): {"config": "sweep.yaml", "run_dir": "out", "trials": "1"},
    ("quickstart",): {"run_dir": "out", "recipe": "tiny.yaml", "max_documents": "40", "vocab_size": "300",
                      "max_new_tokens": "4", "prompts": "def "},
    ("data", "run"): {"input.kind": "text", "input.paths": "corpus", "steps": "{step: clean}",
                      "output.dir": "out", "workers": "1"},
    ("data", "report"): {"dir": "pipeline", "plot": "out/report.png"},
    ("data", "train-classifier"): {"data": "labelled.jsonl", "out": "out/model.npz", "epochs": "1",
                                   "num_buckets": "4096"},
}

FIXTURE_NAMES = ["afile.txt", "afifo", "adir", "adir/", "missing/new/dir", "binary.bin", "run", "shards",
                 "tokenizer", "documents", "corpus", "pipeline", "labelled.jsonl", "tiny.yaml", "sweep.yaml", "out"]
SPECIAL = ["nan", "NaN", "inf", "-inf", ".nan", ".inf", "-.inf", "1e999", "-1e999", "1e-999", "-1", "0", "1", "2",
           "-0.5", "0.5", "1.5", "0x10", str(10**12), str(10**30), str(-10**12), "", " ", "null", "~", "true",
           "false", "[]", "{}", "[1, 2]", "{a: 1}", "- x", "a: b", "auto", "cpu", "cuda", "cuda:0", "cuda:7", "mps",
           "banana", "http://127.0.0.1:9/", "{step: clean}", "{step: nope}", *FIXTURE_NAMES]

# Inputs known to end in a traceback inside train/loop.py, train/checkpoint.py or sample.py
# (owned by the loop/checkpoint change), skipped until fixed there: (command words, option,
# value). None so far: over 10,000 cases (seeds 1-9) found none there that a load-time check
# could not refuse.
OWNED_ELSEWHERE: set[tuple[tuple[str, ...], str, str]] = set()  # owned by the loop/checkpoint change

STATS: collections.Counter = collections.Counter()


def _options(words: tuple[str, ...]) -> list[tuple[str, typing.Any]]:
    return [(dotted, tp) for dotted, tp, _default, _help in C.iter_fields(COMMANDS[words].config_cls)]


def _choices(tp: typing.Any) -> list[str]:
    if typing.get_origin(tp) is typing.Literal:
        return [str(choice) for choice in typing.get_args(tp)]
    return []


def _safe(dotted: str, value: str) -> str:
    """The value, kept inside the case directory and off the network and off Ray."""
    value = value.lstrip("/~").replace("..", "__")
    if dotted.endswith("executor") and value.strip() == "ray":
        return "local"  # Ray would start a local instance (or connect to ray_address)
    if dotted == "parallel" and value.strip().isdigit() and int(value) > 1:
        return "1"  # worker processes would outlive a case stopped by its alarm
    if dotted.endswith("start_urls") and "127.0.0.1" not in value:
        return "http://127.0.0.1:9/" if "://" in value or value.lower().startswith("http") else value
    return value


def _values(tp: typing.Any) -> st.SearchStrategy[str]:
    strategies = [st.sampled_from(SPECIAL), st.text(max_size=40),
                  st.integers(-10**31, 10**31).map(str), st.floats().map(repr),
                  # near the edges of the ranges, so that more cases get past the load and run
                  st.integers(-2, 70).map(str), st.floats(-0.5, 1.5).map(repr)]
    if _choices(tp):
        strategies.append(st.sampled_from(_choices(tp)))
    return st.one_of(*strategies)


@st.composite
def commands(draw) -> tuple[tuple[str, ...], dict[str, str], bool]:
    """(words, the picked options and their values, whether the positional is used)."""
    words = draw(st.sampled_from(sorted(COMMANDS)), label="command")
    options = [("config", str), *_options(words)]
    count = draw(st.integers(1, 2), label="how many options")
    picked = draw(st.lists(st.sampled_from(options), min_size=count, max_size=count, unique=True), label="options")
    values = {dotted: _safe(dotted, draw(_values(tp), label=dotted)) for dotted, tp in picked}
    positional = draw(st.booleans(), label="positional")
    return words, values, positional


def _argv(words: tuple[str, ...], values: dict[str, str], positional: bool) -> list[str]:
    merged = {**BASE[words], **values}
    argv = list(words)
    field = COMMANDS[words].positional
    if positional and field in merged and field != "config" and not merged[field].startswith("-") and merged[field]:
        argv.append(merged.pop(field))
    return argv + [f"--{dotted}={value}" for dotted, value in merged.items()]


class _CaseTimeout(BaseException):
    """Raised in the main thread by SIGALRM when a case runs past CASE_SECONDS."""


def _on_alarm(signum, frame):
    raise _CaseTimeout()


@contextlib.contextmanager
def _no_remote_network():
    """Refuse (and record) connections and name lookups of hosts other than loopback."""
    attempts: list[str] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo
    loopback = ("127.0.0.1", "localhost", "::1", "", None)

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else None
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in loopback:
            attempts.append(str(address))
            raise ConnectionRefusedError(111, "refused by test_cli_fuzz (no network)")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in loopback and not (isinstance(host, str) and host.startswith("127.")):
            attempts.append(f"lookup {host}")
            raise socket.gaierror(socket.EAI_NONAME, "refused by test_cli_fuzz (no network)")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo
    try:
        yield attempts
    finally:
        socket.socket.connect, socket.getaddrinfo = real_connect, real_getaddrinfo


@pytest.fixture(scope="module")
def fixture_template(tiny_run, tmp_path_factory) -> Path:
    """The directory every case starts from (copied per case)."""
    from conftest import tiny_pretrain_config
    from lmforge.data.pipeline import run_pipeline
    from lmforge.train.loop import pretrain

    root = tmp_path_factory.mktemp("cli_fuzz_template")
    for name in ("corpus", "documents", "tokenizer", "shards"):
        shutil.copytree(tiny_run[name], root / name)
    pretrain(tiny_pretrain_config(tiny_run, root / "run", max_steps=2, eval_interval=0, eval_batches=1))
    run_pipeline(C.load_config(C.DataRunConfig, None, {
        "input.kind": "text", "input.paths": [str(root / "corpus")], "steps": [{"step": "clean"}],
        "output.dir": str(root / "pipeline"), "workers": 1}))
    rows = [{"text": f"{word} item number {i}", "label": int(word == "spam")}
            for i in range(20) for word in ("spam", "ham")]
    (root / "labelled.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (root / "afile.txt").write_text("just text\n", encoding="utf-8")
    (root / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (root / "adir").mkdir()
    (root / "tiny.yaml").write_text(
        "model: {preset: llama-tiny, max_seq_len: 32, vocab_size: 0}\n"
        "train: {seq_len: 32, batch_size: 2, max_steps: 2, max_seconds: 5, eval_interval: 0, eval_batches: 1,"
        " device: cpu}\n", encoding="utf-8")
    (root / "sweep.yaml").write_text(
        "command: pretrain\nrecipe: tiny.yaml\ntrials: 1\n"
        "overrides: {train.shards_dir: shards, train.tokenizer_dir: tokenizer}\n"
        "space: {optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def case_runner(fixture_template, tmp_path_factory):
    """Runs one case in a fresh copy of the fixture; prints the tally at the end of the module."""
    cases = tmp_path_factory.mktemp("cli_fuzz_cases")
    started = time.perf_counter()
    counter = iter(range(10**9))

    def run(argv: list[str]) -> tuple[object, str, str]:
        case = cases / f"case{next(counter)}"
        shutil.copytree(fixture_template, case, symlinks=True)
        os.mkfifo(case / "afifo")
        out, err = io.StringIO(), io.StringIO()
        old_cwd, old_handler = os.getcwd(), signal.signal(signal.SIGALRM, _on_alarm)
        os.chdir(case)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
                try:
                    code: object = cli.main(argv)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        except _CaseTimeout:
            code = "timeout"
        finally:
            signal.signal(signal.SIGALRM, old_handler)
            os.chdir(old_cwd)
            shutil.rmtree(case, ignore_errors=True)
        return code, out.getvalue(), err.getvalue()

    yield run
    per_command = sorted((" ".join(k[1]), v) for k, v in STATS.items() if isinstance(k, tuple))
    print(f"\ntest_cli_fuzz: {sum(STATS[k] for k in ('ok', 'refused', 'timeout'))} cases in "
          f"{time.perf_counter() - started:.1f}s: {STATS['ok']} ran (exit 0), {STATS['refused']} refused "
          f"with one error line (exit 2; {STATS['after progress']} after progress lines), {STATS['timeout']} "
          f"stopped after {CASE_SECONDS:.0f}s; per command: " + ", ".join(f"{k} {v}" for k, v in per_command))


@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=FUZZ_SEED is None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@seed(int(FUZZ_SEED or 0))
@given(command=commands())
def test_no_traceback_reaches_the_user(case_runner, command):
    words, values, positional = command
    argv = _argv(words, values, positional)
    if any((words, dotted, value) in OWNED_ELSEWHERE for dotted, value in values.items()):
        return
    with _no_remote_network() as attempts:
        code, _out, err = case_runner(argv)
    assert not attempts, f"{argv} reached for the network: {attempts}"
    STATS[("command", words)] += 1
    if code == "timeout":
        STATS["timeout"] += 1
        return
    assert code in (0, 2), f"{argv} returned {code!r}; stderr: {err}"
    if code == 2:
        STATS["refused"] += 1
        prefix = f"lmforge {' '.join(words)}: error: "
        *progress, last = err.split("\n")[:-1] if err.endswith("\n") else [err, ""]
        assert last.startswith(prefix) and prefix not in last[len(prefix):], (argv, err)
        # Only a command that had started work (pretrain's log, convert's progress bar) printed
        # lines before its error; none of them is an error or a traceback.
        assert not any("Traceback" in line or "rror" in line for line in progress), (argv, err)
        STATS["after progress" if progress else "one line"] += 1
    else:
        STATS["ok"] += 1
