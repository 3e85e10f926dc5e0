"""Text cleaning steps: ``clean`` repairs and tidies a document, ``code_parse`` drops broken code.

``clean`` runs its parts in a fixed order, each one switchable in the options:

1. ``fix_mojibake``: undo text decoded with the wrong codec (``cafÃ©`` -> ``café``) with
   ``ftfy.fix_text``, restricted to ftfy's *encoding* repairs (``fix_encoding``,
   ``restore_byte_a0``, ``replace_lossy_sequences``, ``decode_inconsistent_utf8``,
   ``fix_c1_controls``, ``fix_surrogates``). Its other "fancy" changes are off: quotes stay
   curly, ligatures and full-width letters stay, HTML entities, line breaks, control
   characters and normalisation are left to the parts below. Needs the ``data`` extra.
2. ``normalization``: Unicode NFC (default; only composes, never changes meaning) or NFKC
   (also folds compatibility forms: ``ﬁ`` -> ``fi``, full-width ``Ａ`` -> ``A``), or none.
3. ``strip_markup``: delete ``<script>``/``<style>`` blocks, HTML comments and doctypes, then
   tags of known HTML elements (block elements such as ``<p>`` and ``<br>`` become a line
   break so their texts do not run together), then decode entities ending in ``;``
   (``&amp;`` ``&#39;`` ``&#x27;``). Only *known* element names count as tags so that code
   such as ``List<String>`` or ``a<b && c>d`` is left alone.
4. ``remove_control_chars``: delete C0/C1 control characters except tab and line breaks
   (``\\r`` is left for step 6; vertical tab, form feed and the other characters that
   ``str.splitlines`` treats as line ends become ``\\n``, so lines do not merge), lone
   surrogates, and invisible characters that only get in a tokenizer's way (BOM U+FEFF,
   zero-width space U+200B, word joiner U+2060, soft hyphen U+00AD). Joiners U+200C/U+200D
   are kept: Persian, Indic scripts and emoji need them.
5. ``remove_boilerplate``: delete whole lines that match a boilerplate pattern (cookie
   banners, "all rights reserved", newsletter and share prompts, "click here", "JavaScript
   is disabled", navigation crumbs), case-insensitively, plus ``boilerplate_patterns`` from
   the user. A line longer than ``boilerplate_max_line_chars`` is never boilerplate: a
   paragraph that mentions cookies is content (C4 drops such *lines*, Raffel et al. 2020).
   The number of lines removed is recorded as ``meta["boilerplate_lines_removed"]`` when
   it is not zero.
6. ``normalize_whitespace``: CRLF and lone CR -> LF (also U+2028/U+2029, NEL), no-break and
   other odd spaces (U+00A0, U+2000-U+200A, U+202F, U+205F, U+3000, U+1680) -> plain space,
   trailing spaces and tabs removed, runs of blank lines collapsed to one blank line, blank
   lines at the start and whitespace at the end removed. Runs of spaces *inside* a line are
   kept unless ``collapse_inner_spaces`` is set (code indentation and alignment matter).

A document with nothing but whitespace left is dropped as ``empty_after_clean``.

The defaults are meant for web text. For source code, switch off ``strip_markup`` and
``remove_boilerplate`` (a licence header says "All rights reserved").

``code_parse`` drops code files that do not parse (``does_not_parse``, with the parser's
message as detail): Python with ``ast.parse`` (the running interpreter's grammar), JSON with
``json.loads``, YAML with PyYAML's safe loader (every document of a ``---`` stream). The
language comes from the option ``language`` or, with ``auto``, from the suffix of
``meta["source"]`` (``.py .pyi .pyw .json .yaml .yml``). A document in any other language,
or with no ``source``, is kept unchanged: this step only judges what it can parse.
"""

from __future__ import annotations

import ast
import html
import json
import os
import re
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Literal, Optional, Union

import yaml

from lmforge.config import option
from lmforge.data.document import Document
from lmforge.data.steps import DocStep, Drop, register_step
from lmforge.errors import ConfigError, DataError

# --------------------------------------------------------------------------- clean

# (keywords, pattern): a pattern is only tried on a line that contains one of its keywords
# (lower-cased), because a plain substring test is about 100x faster than Python's regex
# search; patterns with no keywords are anchored, so they fail fast on their own.
_DEFAULT_BOILERPLATE: tuple[tuple[tuple[str, ...], str], ...] = (
    (("cookie",), r"\b(?:we|this (?:web)?site) uses? cookies\b"),
    (("cookie",), r"\b(?:accept|allow|reject|manage) (?:all )?cookies\b"),
    (("cookie",), r"\bcookie (?:policy|settings|preferences|consent)\b"),
    (("rights reserved",), r"\ball rights reserved\b"),
    (("newsletter",), r"\b(?:subscribe|sign up) (?:to|for) (?:our|the) newsletter\b"),
    (("click here",), r"\bclick here\b"),
    (("share",), r"\bshare (?:this(?: \w+)? )?(?:on|via) "
                 r"(?:facebook|twitter|x|linkedin|pinterest|reddit|whatsapp|email)\b"),
    (("javascript",), r"\bjavascript (?:is|has been) (?:disabled|turned off|not enabled|required)\b"),
    (("javascript",), r"\b(?:please )?(?:enable|turn on) javascript\b"),
    ((), r"^(?:skip to (?:main )?content|back to top|toggle navigation)$"),
    # Navigation crumbs: "Home > News > Story", "Home / Blog", or three or more short crumbs
    # joined by » or › (">" alone is too common in code and maths to count).
    ((), r"^home\s*(?:>|»|›|/|\|)\s*\S"),
    (("»", "›"), r"^[^»›]{1,40}(?:\s*[»›]\s*[^»›]{1,40}){2,}$"),
)
DEFAULT_BOILERPLATE_PATTERNS: tuple[str, ...] = tuple(pattern for _, pattern in _DEFAULT_BOILERPLATE)
BoilerplateRule = tuple[tuple[str, ...], "re.Pattern[str]"]  # (keywords, compiled pattern)


@dataclass
class CleanOptions:
    """Options of the ``clean`` step; every part can be switched off on its own."""

    fix_mojibake: bool = option(True, "repair text decoded with the wrong codec (ftfy, encoding fixes only)")
    normalization: Literal["NFC", "NFKC", "none"] = option(
        "NFC", "Unicode normalisation form: NFC composes; NFKC also folds compatibility forms (ﬁ -> fi)")
    strip_markup: bool = option(True, "remove HTML tags, <script>/<style> blocks, comments; decode entities")
    remove_control_chars: bool = option(True, "remove control and invisible characters (keeps tab and newline)")
    remove_boilerplate: bool = option(True, "remove lines matching the boilerplate patterns")
    use_default_boilerplate: bool = option(True, "include the built-in patterns (cookies, newsletter, ...)")
    boilerplate_patterns: list[str] = option([], "extra regular expressions (case-insensitive) for boilerplate lines")
    boilerplate_max_line_chars: int = option(250, "longer lines are never treated as boilerplate")
    normalize_whitespace: bool = option(True, "LF line ends, plain spaces, no trailing spaces, one blank line at most")
    collapse_inner_spaces: bool = option(False, "also turn runs of spaces inside a line into one space")


# Block elements end a line; inline ones just vanish. Only these names count as tags (see
# the module docstring: code like List<String> must survive).
_BLOCK_TAGS = (
    "address article aside blockquote body br caption center dd details dialog div dl dt fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 head header hgroup hr html li main menu nav ol "
    "p pre section summary table tbody td tfoot th thead title tr ul"
).split()
_INLINE_TAGS = (
    "a abbr area audio b base bdi bdo big button canvas cite code col colgroup data datalist del "
    "dfn em embed font frame frameset i iframe img input ins kbd label legend link map mark meta "
    "meter noscript object optgroup option output param picture progress q rp rt ruby s samp "
    "select small source span strike strong sub sup svg template textarea time track tt u var video wbr"
).split()


def _tag_pattern(names: list[str]) -> re.Pattern[str]:
    # A tag: a known name, then well-formed attributes (quoted values may hold '<' or '>'),
    # so that a comparison like "a<b && c>d" is not mistaken for a <b> tag.
    alternatives = "|".join(sorted(names, key=len, reverse=True))
    attribute = r"""\s+[A-Za-z_:@][-\w:.@]*(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?"""
    return re.compile(rf"</?(?:{alternatives})(?:{attribute})*\s*/?>", re.IGNORECASE)


_SCRIPT_STYLE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT_DOCTYPE = re.compile(r"<!--.*?-->|<!doctype[^>]*>|<\?xml[^>]*\?>", re.IGNORECASE | re.DOTALL)
_BLOCK_TAG = _tag_pattern(_BLOCK_TAGS)
_INLINE_TAG = _tag_pattern(_INLINE_TAGS)
# Only entities closed by ';': html.unescape alone also decodes "&copy" in "&copyright".
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")

# Regexes, not str.translate: a translate table is looked up per character (~80 ns each),
# a character-class regex scans about 50x faster and most documents have nothing to change.
# Controls that str.splitlines() treats as line ends become "\n": deleting them would glue
# two lines together.
_LINE_END_CONTROLS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85]")
_CONTROL_OR_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f"  # C0 and C1 controls but tab, LF, CR, line ends
    "\ufeff\u200b\u2060\u00ad"  # BOM, zero-width space, word joiner, soft hyphen
    "\ud800-\udfff]")  # lone surrogates cannot be written as UTF-8
_ODD_SPACES = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_LINE_BREAK_CHARS = re.compile("[\r\x0b\x0c\x85\u2028\u2029]")  # after "\r\n" -> "\n"
_ODD_SPACE_OR_BREAK = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\r\x0b\x0c\x85\u2028\u2029]")
_INNER_SPACES = re.compile(r"(?<=\S) {2,}")
_BLANK_LINE_RUN = re.compile(r"\n{3,}")


def _ftfy_encoding_only_config():  # -> ftfy.TextFixerConfig (a picklable NamedTuple)
    try:
        import ftfy
    except ImportError:
        raise DataError("clean: fix_mojibake needs ftfy: pip install 'lmforge[data]', "
                        "or set fix_mojibake: false") from None
    return ftfy.TextFixerConfig(
        unescape_html=False, remove_terminal_escapes=False, fix_latin_ligatures=False,
        fix_character_width=False, uncurl_quotes=False, fix_line_breaks=False,
        remove_control_chars=False, normalization=None, explain=False)


def fix_mojibake(text: str) -> str:
    """Undo wrong-codec decoding (``cafÃ©`` -> ``café``) with ftfy's encoding repairs only."""
    import ftfy

    return ftfy.fix_text(text, _ftfy_encoding_only_config())


def strip_markup(text: str) -> str:
    """Remove HTML left in text: script/style blocks, comments, known tags; decode ``&...;``."""
    text = _SCRIPT_STYLE.sub("", text)
    text = _COMMENT_DOCTYPE.sub("", text)
    text = _BLOCK_TAG.sub("\n", text)
    text = _INLINE_TAG.sub("", text)
    # Entities last, so an escaped "&lt;b&gt;" (text about a tag) survives as "<b>".
    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)


def remove_control_chars(text: str) -> str:
    """Delete control and invisible characters; keep tab, LF, CR; line-end controls become LF."""
    return _CONTROL_OR_INVISIBLE.sub("", _LINE_END_CONTROLS.sub("\n", text))


def normalize_whitespace(text: str, collapse_inner_spaces: bool = False) -> str:
    """LF line ends, plain spaces, no trailing spaces, at most one blank line in a row, trimmed."""
    text = text.replace("\r\n", "\n")
    if _ODD_SPACE_OR_BREAK.search(text):  # one scan; most texts have neither
        text = _ODD_SPACES.sub(" ", _LINE_BREAK_CHARS.sub("\n", text))
    # Per-line rstrip is ~8x faster than a "[ \t]+$" regex, which retries at every space.
    text = "\n".join(line.rstrip(" \t") for line in text.split("\n"))
    if collapse_inner_spaces:
        text = _INNER_SPACES.sub(" ", text)
    text = _BLANK_LINE_RUN.sub("\n\n", text)
    return text.lstrip("\n").rstrip()


def _compile_boilerplate(options: CleanOptions) -> tuple[BoilerplateRule, ...]:
    rules: list[BoilerplateRule] = []
    if options.use_default_boilerplate:
        rules += [(keywords, re.compile(pattern, re.IGNORECASE)) for keywords, pattern in _DEFAULT_BOILERPLATE]
    for index, pattern in enumerate(options.boilerplate_patterns):
        try:
            rules.append(((), re.compile(pattern, re.IGNORECASE)))
        except re.error as err:
            raise ConfigError(f"clean: boilerplate_patterns[{index}] {pattern!r} is not a valid "
                              f"regular expression ({err}): fix or remove it") from None
    return tuple(rules)


def remove_boilerplate_lines(text: str, rules: tuple[BoilerplateRule, ...], max_line_chars: int) -> tuple[str, int]:
    """Drop lines (compared stripped) that match a rule; return the text and the lines removed.

    A rule is ``(keywords, pattern)``: the pattern is searched only when the lower-cased line
    contains one of the keywords, or always when there are none.
    """
    kept, removed = [], 0
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped and len(stripped) <= max_line_chars:
            lowered = stripped.lower()
            if any((not keywords or any(k in lowered for k in keywords)) and pattern.search(stripped)
                   for keywords, pattern in rules):
                removed += 1
                continue
        kept.append(line)
    return "\n".join(kept), removed


@register_step("clean", CleanOptions, "repair mojibake, normalise Unicode and whitespace, strip markup, "
                                      "control characters and boilerplate lines")
class Clean(DocStep):
    """Tidy one document's text (see the module docstring for the parts and their order)."""

    def __init__(self, options: CleanOptions) -> None:
        if options.normalization not in ("NFC", "NFKC", "none"):
            raise ConfigError(f"clean: normalization must be NFC, NFKC or none, got {options.normalization!r}")
        if options.boilerplate_max_line_chars < 1:
            raise ConfigError("clean: boilerplate_max_line_chars must be at least 1")
        self.options = options
        # Compiled patterns pickle (re-compiled on load), so the step can go to worker processes.
        self._boilerplate = _compile_boilerplate(options) if options.remove_boilerplate else ()
        # Built here so a missing ftfy fails when the pipeline is built, not on the first document.
        self._ftfy_config = _ftfy_encoding_only_config() if options.fix_mojibake else None

    def __call__(self, doc: Document) -> Union[Document, Drop]:
        opts = self.options
        text = doc.text
        if self._ftfy_config is not None and not text.isascii():  # ASCII text cannot be mojibake
            import ftfy

            text = ftfy.fix_text(text, self._ftfy_config)
        if opts.normalization != "none":
            text = unicodedata.normalize(opts.normalization, text)
        if opts.strip_markup:
            text = strip_markup(text)
        if opts.remove_control_chars:
            text = remove_control_chars(text)
        removed = 0
        if self._boilerplate:
            text, removed = remove_boilerplate_lines(text, self._boilerplate, opts.boilerplate_max_line_chars)
        if opts.normalize_whitespace:
            text = normalize_whitespace(text, opts.collapse_inner_spaces)
        if not text.strip():
            return Drop("empty_after_clean", f"{len(doc.text)} characters before cleaning")
        meta = {**doc.meta, "boilerplate_lines_removed": removed} if removed else doc.meta
        return Document(doc.id, text, meta)


# --------------------------------------------------------------------------- code_parse

_LANGUAGE_BY_SUFFIX = {".py": "python", ".pyi": "python", ".pyw": "python",
                       ".json": "json", ".yaml": "yaml", ".yml": "yaml"}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ~10x faster


@dataclass
class CodeParseOptions:
    """Options of the ``code_parse`` step."""

    language: Literal["auto", "python", "json", "yaml"] = option(
        "auto", "auto: from the suffix of meta['source'] (.py .pyi .pyw .json .yaml .yml; others are kept); "
                "or parse every document as this language")


def language_of(doc: Document) -> Optional[str]:
    """The language ``code_parse`` would use in ``auto`` mode, from ``meta['source']``'s suffix."""
    source = doc.meta.get("source")
    if not isinstance(source, str):
        return None
    return _LANGUAGE_BY_SUFFIX.get(os.path.splitext(source)[1].lower())


def parse_error(text: str, language: str) -> Optional[str]:
    """Why ``text`` does not parse as ``language`` (one line), or None when it parses."""
    if language == "python":
        with warnings.catch_warnings():
            # Invalid escapes etc. are warnings (errors under -W error); they do not stop a parse.
            warnings.simplefilter("ignore")
            try:
                ast.parse(text)
            except SyntaxError as err:  # IndentationError and TabError too
                return f"line {err.lineno}: {err.msg}" if err.lineno else err.msg
            except ValueError as err:  # null bytes, on Pythons before 3.12
                return str(err)
            except (RecursionError, MemoryError):
                return "too deeply nested for the parser"
        return None
    if language == "json":
        try:
            json.loads(text)
        except json.JSONDecodeError as err:
            return f"line {err.lineno} column {err.colno}: {err.msg}"
        except RecursionError:
            return "too deeply nested for the parser"
        return None
    if language == "yaml":
        try:
            for _ in yaml.load_all(text, Loader=_YAML_LOADER):
                pass
        except yaml.MarkedYAMLError as err:
            where = f"line {err.problem_mark.line + 1}: " if err.problem_mark else ""
            return f"{where}{err.problem or err.context}"
        except yaml.YAMLError as err:
            return str(err).splitlines()[0]
        except (ValueError, OverflowError) as err:  # e.g. a timestamp with month 13
            return f"bad value: {err}"
        except RecursionError:
            return "too deeply nested for the parser"
        return None
    raise ValueError(f"unknown language {language!r}")


@register_step("code_parse", CodeParseOptions, "drop Python/JSON/YAML files that do not parse")
class CodeParse(DocStep):
    """Drop a code document whose text does not parse (``does_not_parse``); keep unknown languages."""

    def __init__(self, options: CodeParseOptions) -> None:
        if options.language not in ("auto", "python", "json", "yaml"):
            raise ConfigError(f"code_parse: language must be auto, python, json or yaml, got {options.language!r}")
        self.options = options

    def __call__(self, doc: Document) -> Union[Document, Drop]:
        language = language_of(doc) if self.options.language == "auto" else self.options.language
        if language is None:
            return doc
        error = parse_error(doc.text, language)
        if error is not None:
            return Drop("does_not_parse", f"{language}: {error}")
        return doc
