"""The ``clean`` and ``code_parse`` steps: exact output of each cleaning part, and every Drop."""

from __future__ import annotations

import pickle

import pytest

from lmforge.data.clean import (
    Clean,
    CleanOptions,
    CodeParse,
    CodeParseOptions,
    normalize_whitespace,
    remove_control_chars,
    strip_markup,
)
from lmforge.data.document import Document
from lmforge.data.steps import Drop, build_step, registered_steps
from lmforge.errors import ConfigError

# Every part off: each test switches on exactly the part it checks.
NOTHING = dict(fix_mojibake=False, normalization="none", strip_markup=False, remove_control_chars=False,
               remove_boilerplate=False, normalize_whitespace=False)


def clean(text: str, **options) -> Document | Drop:
    return Clean(CleanOptions(**options))(Document("d1", text, {"source": "page.html"}))


def clean_only(text: str, **options) -> str:
    result = clean(text, **{**NOTHING, **options})
    assert isinstance(result, Document)
    return result.text


# --------------------------------------------------------------------------- clean: parts


def test_mojibake_repaired_without_fancy_changes():
    assert clean_only("cafÃ©", fix_mojibake=True) == "café"
    assert clean_only("Itâ€™s", fix_mojibake=True) == "It\u2019s"  # curly quote repaired, not uncurled
    # Only encoding repairs: ligatures, full-width letters, curly quotes, entities stay as they are.
    assert clean_only("\ufb01 \uff21 \u201cq\u201d &amp;", fix_mojibake=True) == "\ufb01 \uff21 \u201cq\u201d &amp;"
    assert clean_only("naïve café", fix_mojibake=True) == "naïve café"  # correct text untouched


def test_unicode_normalization_forms():
    decomposed = "cafe\u0301 \ufb01 \uff21"
    assert clean_only(decomposed, normalization="NFC") == "caf\u00e9 \ufb01 \uff21"
    assert clean_only(decomposed, normalization="NFKC") == "caf\u00e9 fi A"
    assert clean_only(decomposed, normalization="none") == decomposed


def test_markup_removed_block_tags_break_lines_entities_decoded():
    page = ("<!DOCTYPE html><html><head><title>T</title><style>p{color:red}</style></head>"
            "<body><p class='x'>One &amp; two</p><p>It&#39;s &lt;b&gt; &#x41;</p>"
            "<script type=\"text/javascript\">var a = '<p>';</script><!-- a comment -->"
            "<a href=\"/x?a=1&amp;b=2\">link</a><br/>end</body></html>")
    # html, head, title -> 3 line breaks; /title, /head, body, p -> 4; each block tag is one "\n".
    assert strip_markup(page) == "\n\n\nT\n\n\n\nOne & two\n\nIt's <b> A\nlink\nend\n\n"
    assert clean_only(page, strip_markup=True, normalize_whitespace=True) == "T\n\nOne & two\n\nIt's <b> A\nlink\nend"


def test_markup_leaves_code_and_unterminated_entities_alone():
    code = "List<String> names; if (a<b && c>d) x = y &copy z;"
    assert strip_markup(code) == code
    assert strip_markup("AT&T &copyright &bogus;") == "AT&T &copyright &bogus;"


def test_control_characters_removed_tab_and_newline_kept():
    text = "a\x00b\x07c\td\x0ce\r\nf\u200bg\ufeffh\u00adi\x7fj\x9bk\u200dl"
    # \x0c (form feed) ends a line, so it becomes \n; \r is left for whitespace normalisation;
    # the zero-width joiner U+200D is kept.
    assert remove_control_chars(text) == "abc\td\ne\r\nfghijk\u200dl"
    assert clean_only(text, remove_control_chars=True) == "abc\td\ne\r\nfghijk\u200dl"


def test_whitespace_normalisation():
    text = "\n\n  indented\r\nline one   \r\n\r\n\r\n\r\nline\u00a0two\u3000x\u2009y\t\rthree\n\n\n"
    assert normalize_whitespace(text) == "  indented\nline one\n\nline two x y\nthree"
    assert normalize_whitespace("a  b   c\n    d  e") == "a  b   c\n    d  e"
    assert normalize_whitespace("a  b   c\n    d  e", collapse_inner_spaces=True) == "a b c\n    d e"


def test_boilerplate_lines_removed_and_counted():
    text = "\n".join([
        "Hello world.",
        "We use cookies to improve your experience.",
        "Accept all cookies",
        "\u00a9 2024 Example Ltd. All Rights Reserved.",
        "Home > News > Story",
        "News \u00bb World \u00bb Europe",
        "Click here to read more",
        "Share on Facebook",
        "JavaScript is disabled in your browser.",
        "Subscribe to our newsletter!",
        "Skip to content",
        "The price rose 5 > 3 > 1 times.",
        "Real text.",
    ])
    result = clean(text, **{**NOTHING, "remove_boilerplate": True})
    assert result.text == "Hello world.\nThe price rose 5 > 3 > 1 times.\nReal text."
    assert result.meta == {"source": "page.html", "boilerplate_lines_removed": 10}


def test_boilerplate_long_lines_user_patterns_and_defaults_off():
    long_line = "We use cookies in this study " + "of baking biscuits " * 20
    assert clean_only(long_line, remove_boilerplate=True) == long_line  # over 250 chars: content
    text = "Advertisement\nAll rights reserved\nkeep"
    assert clean_only(text, remove_boilerplate=True, boilerplate_patterns=["^advertisement$"]) == "keep"
    assert clean_only(text, remove_boilerplate=True, use_default_boilerplate=False,
                      boilerplate_patterns=["^advertisement$"]) == "All rights reserved\nkeep"
    unchanged = clean(text, **{**NOTHING, "remove_boilerplate": True, "boilerplate_patterns": ["nomatch"],
                               "use_default_boilerplate": False})
    assert unchanged.meta == {"source": "page.html"}  # nothing removed: no count recorded


def test_all_parts_together_with_defaults():
    raw = ("<p>Caf\u00c3\u00a9 caf\u0065\u0301\u00a0menu &amp; prices</p>\r\n"
           "<p>Accept cookies</p>\r\n\r\n\r\n<p>Open\x07 daily.   </p>")
    result = clean(raw)
    assert result.text == "Café café menu & prices\n\nOpen daily."
    assert result.meta["boilerplate_lines_removed"] == 1


def test_empty_after_clean_is_dropped():
    assert clean("<script>alert(1)</script>\n\n  \x00 ") == Drop("empty_after_clean", "31 characters before cleaning")
    assert clean("We use cookies.\nAll rights reserved.") == Drop("empty_after_clean", "36 characters before cleaning")


def test_clean_step_registered_built_from_yaml_and_picklable():
    assert "clean" in registered_steps() and "code_parse" in registered_steps()
    step = build_step({"step": "clean", "normalization": "NFKC", "boilerplate_patterns": ["^ad$"]}, 0)
    assert isinstance(step, Clean) and step.options.normalization == "NFKC"
    copy = pickle.loads(pickle.dumps(step))
    assert copy(Document("x", "ad\n\ufb01ne")).text == "fine"
    with pytest.raises(ConfigError, match=r"steps\[0\]\.normalization"):
        build_step({"step": "clean", "normalization": "NFD"}, 0)
    with pytest.raises(ConfigError, match=r"boilerplate_patterns\[1\] '\(' is not a valid regular expression"):
        Clean(CleanOptions(boilerplate_patterns=["ok", "("]))


def test_clean_does_not_mutate_its_input():
    doc = Document("x", "Accept cookies\nbody", {"source": "s"})
    out = Clean(CleanOptions())(doc)
    assert doc.text == "Accept cookies\nbody" and doc.meta == {"source": "s"}
    assert out.text == "body" and out.meta == {"source": "s", "boilerplate_lines_removed": 1}


# --------------------------------------------------------------------------- code_parse


def code(text: str, source: str = "", language: str = "auto") -> Document | Drop:
    meta = {"source": source} if source else {}
    return CodeParse(CodeParseOptions(language=language))(Document("c", text, meta))


def test_python_that_parses_is_kept_unchanged():
    doc = Document("c", "def f(x):\n    return '\\d' + x\n", {"source": "pkg/mod.py"})
    assert CodeParse(CodeParseOptions())(doc) is doc  # an invalid escape is only a warning


@pytest.mark.parametrize("text, detail", [
    ("def f(:\n    pass\n", "python: line 1: invalid syntax"),
    ("print 'hi'\n", "python: line 1: Missing parentheses in call to 'print'. Did you mean print(...)?"),
    ("if x:\npass\n", "python: line 2: expected an indented block after 'if' statement on line 1"),
    ("(" * 300 + ")" * 300, "python: line 1: too many nested parentheses"),
])
def test_python_that_does_not_parse_is_dropped(text, detail):
    assert code(text, "a/b.py") == Drop("does_not_parse", detail)


def test_python_null_bytes_and_deep_nesting_are_drops_not_crashes():
    result = code("x = 1\x00\n", "x.pyi")
    assert result.reason == "does_not_parse" and "null bytes" in result.detail
    assert code("[" * 100_000, "deep.json") == Drop("does_not_parse", "json: too deeply nested for the parser")


def test_json_and_yaml():
    assert isinstance(code('{"a": [1, 2]}', "data.JSON"), Document)
    assert code('{"a": 1,}', "data.json") == Drop(
        "does_not_parse", "json: line 1 column 9: Expecting property name enclosed in double quotes")
    assert isinstance(code("a: 1\n---\nb: [2, 3]\n", "k8s.yaml"), Document)  # a multi-document stream
    assert code("a: [1, 2\n", "conf.yml") == Drop("does_not_parse", "yaml: line 2: did not find expected ',' or ']'")
    assert code("a: 2001-13-01\n", "conf.yml") == Drop("does_not_parse", "yaml: bad value: month must be in 1..12")


def test_language_from_option_overrides_source_and_unknown_is_kept():
    assert code("{not json", "notes.txt").text == "{not json"  # unknown suffix: kept
    assert code("{not json").text == "{not json"  # no source: kept
    assert code("{not json", "data.jsonl:3").text == "{not json"  # a JSONL record is not a .json file
    assert code("{not json", "notes.txt", language="json").reason == "does_not_parse"
    assert isinstance(code("x = 1", "data.json", language="python"), Document)
    with pytest.raises(ConfigError, match=r"steps\[2\]\.language"):
        build_step({"step": "code_parse", "language": "rust"}, 2)
