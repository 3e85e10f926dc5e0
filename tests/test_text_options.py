"""A string option takes the text the user typed; only options of other types are read as YAML.

The fields are found by walking the CLI's own parser, so a new verb or a new string field is
covered without touching this file. The properties are derandomized (as in test_data_fuzz.py)
so a failure reproduces.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import types
import typing
from typing import Optional

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from lmforge import cli
from lmforge import config as C
from lmforge.cli import Verb, main, parse_config
from lmforge.errors import ConfigError
from lmforge.models.presets import PRESETS

# Texts YAML would change or refuse: a number, None (null, ~, a comment, nothing), booleans,
# a list, a mapping, an int in hex, tags, anchors, block scalars, quotes, whitespace, newlines.
TRICKY = ["1e3", "1000", "null", "Null", "~", "# comment", "", " ", "yes", "no", "off", "on", "true",
          "- item", "a: b", "dog, domestic dog: a member of the genus Canis", "[1, 2]", "{a: 1}", "0x10",
          "1_000", ".inf", "!!int 3", "&anchor x", "*alias", "%YAML 1.1", "@x", "`x", "'quoted'",
          '"double"', "|\n  block", ">- folded", " leading", "trailing ", "\ttab", "two\nlines", "\n",
          "--", "-x", "--seed", "-1", "a=b", "ünïcödé ✓", "---", "..."]


def _is_str(tp) -> bool:
    if tp is str:
        return True
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and set(typing.get_args(tp)) == {
        str, type(None)}


def _is_str_list(tp) -> bool:
    return typing.get_origin(tp) in (list, tuple) and typing.get_args(tp) in ((str,), (str, ...))


def _commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    """Every command the parser accepts (``("generate",)``, ``("data", "run")``, ...)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield words
        return
    for name, child in subs[0].choices.items():
        yield from _commands(child, (*words, name))


def _configured_commands() -> list[tuple[tuple[str, ...], type]]:
    found = []
    for words in _commands(cli.build_parser()):
        try:
            found.append((words, type(parse_config(list(words)))))
        except ConfigError:  # `lmforge models`, `lmforge data steps`: no options
            pass
    return found


COMMANDS = _configured_commands()
STRING_FIELDS = {words: [d for d, tp, _, _ in C.iter_fields(cls) if _is_str(tp)] for words, cls in COMMANDS}
LIST_FIELDS = {words: [d for d, tp, _, _ in C.iter_fields(cls) if _is_str_list(tp)] for words, cls in COMMANDS}
CONFIG_OF = dict(COMMANDS)
PRESET = "model.preset"  # checked against the presets at load time: its own test below


def _get(cfg, dotted: str):
    return functools.reduce(getattr, dotted.split("."), cfg)


def _range_allows(words, dotted: str, text: str) -> bool:
    """Whether the field's range check (a device name, a writable path, ...) takes ``text``; one
    that does not is refused at load (tests/test_config_ranges.py), so it is left out here."""
    check = C.check_for(CONFIG_OF[words], dotted)
    return check is None or check.problem(text, str) is None


def _assert_refused_by_range(words, texts: dict[str, str]) -> None:
    for dotted, text in texts.items():
        with pytest.raises(ConfigError, match=rf"^config key '{re.escape(dotted)}': expected "):
            C.load_config(CONFIG_OF[words], None, {dotted: text})


def test_introspection_finds_every_verb_and_its_string_fields():
    # finetune needs train.init_from and sweep a search space before their configs load: their
    # string fields get hostile text from a working base config in tests/test_cli_fuzz.py
    needs_values = {("finetune",), ("sweep",)}
    assert set(CONFIG_OF) == ({(name,) for name in cli.VERBS} - needs_values) | {("data", name) for name in cli.DATA_VERBS}
    assert CONFIG_OF[("generate",)] is C.GenerateConfig
    assert {"checkpoint", "prompt", "device"} <= set(STRING_FIELDS[("generate",)])
    assert LIST_FIELDS[("generate",)] == ["stop"]
    assert {"source.text_field", "out_dir", "source.crawl.user_agent"} <= set(STRING_FIELDS[("prepare",)])
    assert {"source.paths", "source.crawl.start_urls"} <= set(LIST_FIELDS[("prepare",)])
    assert {"input.text_field", "output.dir", "ray_address"} <= set(STRING_FIELDS[("data", "run")])
    assert PRESET in STRING_FIELDS[("pretrain",)] and LIST_FIELDS[("quickstart",)] == ["prompts"]


@pytest.mark.parametrize("words", sorted(STRING_FIELDS), ids=" ".join)
def test_tricky_texts_reach_every_string_field_unchanged(words):
    fields = [d for d in STRING_FIELDS[words] if d != PRESET]
    assert fields
    for text in TRICKY:
        taken = [d for d in fields if _range_allows(words, d, text)]
        _assert_refused_by_range(words, {d: text for d in fields if d not in taken})
        cfg = parse_config([*words, *(f"--{dotted}={text}" for dotted in taken)])
        assert {d: _get(cfg, d) for d in taken} == {d: text for d in taken}
        cfg = C.load_config(CONFIG_OF[words], None, {dotted: text for dotted in taken})
        assert {d: _get(cfg, d) for d in taken} == {d: text for d in taken}


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_text_reaches_every_string_field_unchanged(data):
    words = data.draw(st.sampled_from(sorted(STRING_FIELDS)), label="command")
    fields = [d for d in STRING_FIELDS[words] if d != PRESET]
    texts = {dotted: data.draw(st.text(), label=dotted) for dotted in fields}
    _assert_refused_by_range(words, {d: t for d, t in texts.items() if not _range_allows(words, d, t)})
    texts = {d: t for d, t in texts.items() if _range_allows(words, d, t)}
    # through the command line, as `lmforge WORDS --FIELD=TEXT ...`
    cfg = parse_config([*words, *(f"--{dotted}={text}" for dotted, text in texts.items())])
    assert {d: _get(cfg, d) for d in texts} == texts
    # a value that does not start with '-' may follow its option as the next argument
    spaced = {d: t for d, t in texts.items() if not t.startswith("-")}
    cfg = parse_config([*words, *(arg for dotted, text in spaced.items() for arg in (f"--{dotted}", text))])
    assert {d: _get(cfg, d) for d in spaced} == spaced
    # through the Python API with the same override mapping
    cfg = C.load_config(CONFIG_OF[words], None, texts)
    assert {d: _get(cfg, d) for d in texts} == texts


@settings(max_examples=100, deadline=None, derandomize=True)
@given(text=st.text())
@example(text="1e3")
@example(text="null")
@example(text="")
@example(text="llama-tiny")
def test_model_preset_is_looked_up_by_the_text_as_typed(text):
    for words in (w for w, fields in STRING_FIELDS.items() if PRESET in fields):
        if text in PRESETS:
            cfg = parse_config([*words, f"--{PRESET}={text}"])
            assert cfg.model.preset == "" and cfg.model.dim == PRESETS[text].get("dim", cfg.model.dim)
        elif text == "":
            assert parse_config([*words, f"--{PRESET}="]).model.preset == ""
        else:
            with pytest.raises(ConfigError) as err:
                parse_config([*words, f"--{PRESET}={text}"])
            assert f"unknown model preset {text!r};" in str(err.value)


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_tokens_reach_every_list_of_strings_field_unchanged(data):
    words = data.draw(st.sampled_from(sorted(w for w, fields in LIST_FIELDS.items() if fields)), label="command")
    dotted = data.draw(st.sampled_from(LIST_FIELDS[words]), label="field")
    tokens = data.draw(st.lists(st.text().filter(lambda t: not t.startswith("-") and _range_allows(words, dotted, t)),
                                max_size=4), label="tokens")
    assert _get(parse_config([*words, f"--{dotted}", *tokens]), dotted) == tokens
    assert _get(C.load_config(CONFIG_OF[words], None, {dotted: tokens}), dotted) == tokens
    one = data.draw(st.text().filter(lambda t: _range_allows(words, dotted, t)), label="one")
    assert _get(C.load_config(CONFIG_OF[words], None, {dotted: one}), dotted) == [one]
    # Before Python 3.12 argparse drops a '--' token from a list option's values, even written
    # --stop=-- (it cannot be told from `--stop --`); a recipe gives that list.
    assume(one != "--")
    assert _get(parse_config([*words, f"--{dotted}={one}"]), dotted) == [one]


ISSUE_EXAMPLES = ["1e3", "# comment", "null", "yes", "- item", "dog, domestic dog: a member of the genus Canis"]


@pytest.mark.parametrize("text", ISSUE_EXAMPLES)
def test_generate_prompt_through_main(monkeypatch, capsys, text):
    """`lmforge generate RUN --prompt TEXT` runs with the prompt TEXT (main's own parsing)."""
    seen = []
    generate = cli.VERBS["generate"]
    monkeypatch.setitem(cli.VERBS, "generate", dataclasses.replace(generate, run=seen.append))
    assert main(["generate", "RUN", "--prompt", text, "--stop", text, "yes", "--temperature", "0"]) == 0
    (cfg,) = seen
    assert (cfg.checkpoint, cfg.prompt, cfg.stop, cfg.temperature) == ("RUN", text, [text, "yes"], 0.0)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv, field, expected", [
    (["prepare", "--source.text_field", "null"], "source.text_field", "null"),
    (["prepare", "--out_dir", "~"], "out_dir", "~"),
    (["prepare", "--source.paths", "1e3", "no"], "source.paths", ["1e3", "no"]),
    (["data", "run", "--input.text_field", "yes"], "input.text_field", "yes"),
    (["data", "train-classifier", "- labelled.jsonl", "--label_field", "1"], "data", "- labelled.jsonl"),
    (["data", "train-classifier", "--label_field", "1"], "label_field", "1"),
    (["evaluate", "1e3", "--split", "off"], "checkpoint", "1e3"),
    (["evaluate", "1e3", "--split", "off"], "split", "off"),
    (["convert", "null", "--out_dir", "# out"], "out_dir", "# out"),
    (["quickstart", "--prompts", "def f(", "[x]"], "prompts", ["def f(", "[x]"]),
])
def test_paths_fields_and_positionals_take_the_text(argv, field, expected):
    assert _get(parse_config(argv), field) == expected


def test_other_types_are_still_read_as_yaml():
    cfg = parse_config(["generate", "--temperature", "1e3", "--top_k", "1e3", "--max_new_tokens", "0x10"])
    assert (cfg.temperature, cfg.top_k, cfg.max_new_tokens) == (1000.0, 1000, 16)
    cfg = parse_config(["pretrain", "--train.compile", "yes", "--optim.lr", "3e-4", "--train.precision", "bf16"])
    assert (cfg.train.compile, cfg.optim.lr, cfg.train.precision) == (True, 3e-4, "bf16")
    with pytest.raises(ConfigError, match=r"^config key 'max_new_tokens': expected an integer, got None$"):
        parse_config(["generate", "--max_new_tokens", "null"])
    with pytest.raises(ConfigError, match=r"^config key 'train.compile': expected true or false, got 3$"):
        parse_config(["pretrain", "--train.compile", "3"])
    with pytest.raises(ConfigError, match="config key 'optim.name': expected one of 'sgd'"):
        parse_config(["pretrain", "--optim.name", "yes"])


def test_pipeline_steps_given_as_yaml_text_still_build():
    from lmforge.data.pipeline.plan import build_steps

    cfg = parse_config(["data", "run", "--steps", "{step: clean}", "[{step: exact_dedup}]"])
    assert [step.name for step in build_steps(cfg.steps)] == ["clean", "exact_dedup"]


def test_a_recipe_file_is_still_yaml(tmp_path):
    recipe = tmp_path / "generate.yaml"
    recipe.write_text('prompt: "null"\nstop: [a, "1e3", 7]\ntemperature: 1.0e-1\nmax_new_tokens: 0x10\n')
    cfg = C.load_config(C.GenerateConfig, recipe)
    assert (cfg.prompt, cfg.stop, cfg.temperature, cfg.max_new_tokens) == ("null", ["a", "1e3", "7"], 0.1, 16)
    for text, got in (("null", "None"), ("yes", "True"), ("[x]", "['x']")):
        recipe.write_text(f"prompt: {text}\n")
        with pytest.raises(ConfigError, match=rf"^config key 'prompt': expected a string, got {re.escape(got)}$"):
            C.load_config(C.GenerateConfig, recipe)
    # the command line beats the recipe, with the text as typed
    recipe.write_text("prompt: from the recipe\ntemperature: 0.5\n")
    cfg = parse_config(["generate", "--config", str(recipe), "--prompt", "null"])
    assert (cfg.prompt, cfg.temperature) == ("null", 0.5)


@dataclasses.dataclass
class _WithOptionalText:
    note: Optional[str] = C.option(None, "a note")
    tags: Optional[list[str]] = C.option(None, "tags")
    count: Optional[int] = C.option(None, "a count")


def test_optional_string_takes_text_and_null_only_from_a_recipe(tmp_path):
    cfg = C.load_config(_WithOptionalText, None, {"note": "null", "tags": "~", "count": "null"})
    assert (cfg.note, cfg.tags, cfg.count) == ("null", ["~"], None)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("note: null\ntags: null\n")
    assert C.load_config(_WithOptionalText, recipe, {"count": "3"}) == _WithOptionalText(None, None, 3)
    parser = argparse.ArgumentParser()
    cli._add_options(parser, Verb(_WithOptionalText, print, "test"))
    shown = " ".join(parser.format_help().split())
    assert "[a string; null only in a --config recipe; default null]" in shown
    assert "[an integer or null; default null]" in shown


def test_takes_text_names_exactly_the_string_types():
    text = [str, Optional[str], str | None, list[str], typing.List[str], tuple[str, ...], Optional[list[str]]]
    other = [int, float, bool, dict, list[dict], list[int], Optional[int], typing.Union[str, int],
             typing.Literal["a", "b"], C.SourceConfig]
    assert [C.takes_text(tp) for tp in text] == [True] * len(text)
    assert [C.takes_text(tp) for tp in other] == [False] * len(other)


def test_a_value_starting_with_dash_gets_a_hint(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--prompt", "-x"])
    assert exit_info.value.code == 2
    assert "(a value that starts with '-' is written --prompt=VALUE)" in capsys.readouterr().err
    assert parse_config(["generate", "--prompt=-x"]).prompt == "-x"
    assert parse_config(["generate", "--prompt=--"]).prompt == "--"


def test_verb_help_says_strings_are_taken_as_typed(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "A string option takes the text exactly as typed" in out and "--prompt=-x" in out
