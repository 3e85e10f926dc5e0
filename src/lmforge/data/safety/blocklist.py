"""The ``blocklist`` step: drop documents that use blocked words or link to blocked domains.

C4 (Raffel et al. 2020) dropped any page containing a word of its bad-words list; RefinedWeb
and FineWeb drop pages whose URL is on a blocklist of adult domains. This step does both:

- **Words** (and multi-word phrases) match whole words only: ``\\w+`` tokens of the text
  after NFKC normalisation and casefolding, so ``FUCK``, ``ｆｕｃｋ`` (full width) and ``Fuck!``
  match ``fuck`` but ``Scunthorpe`` does not match ``cunt``. Matching is one set lookup per
  token, never a loop over the list per document.
- **Cheap de-obfuscation** (``deobfuscate``): a token that holds a letter and a digit has the
  common look-alike digits read as letters (0→o 1→i 3→e 4→a 5→s 7→t: ``sh1t``, ``n1gger``),
  and runs of three or more equal characters are squeezed to one (``fuuuck``). Pure numbers
  are never rewritten (so ``455`` is not ``ass``). Single words only, not phrases. Not
  handled: symbols inside words (``f@ck``, ``$hit``), spaced or dotted letters (``f u c k``),
  misspellings, other scripts' look-alike letters.
- **Domains** match by host suffix: blocking ``example.com`` blocks ``www.example.com`` and
  ``a.b.example.com`` but not ``notexample.com``. Hosts are taken from URLs in the text (with
  a scheme such as ``https://`` or starting with ``www.``) and from ``meta[url_field]``; a bare
  domain name written in prose is not a link and is not counted.

A document is dropped when its count of blocked-word occurrences reaches ``min_word_hits``
(reason ``blocked_words``) or its count of links to blocked hosts reaches
``min_domain_hits`` (reason ``blocked_domain``); the detail gives the count, never the words,
so rejects files and reports do not become a list of slurs.

List files hold one entry per line; ``#`` starts a comment, blank lines are ignored. The
built-in ``default_blocklist.txt`` is short on purpose (see the note at its top).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from typing import Optional, Union
from urllib.parse import urlsplit

import numpy as np

from lmforge.config import option
from lmforge.data.document import Document
from lmforge.data.steps import DocStep, Drop, register_step
from lmforge.errors import ConfigError, DataError

_WORD_RE = re.compile(r"\w+")
# A link: an explicit scheme, or a host that starts with "www.". Stops at whitespace, quotes
# and brackets so that "(see https://x.com)" yields "https://x.com".
_URL_RE = re.compile(r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"'()\[\]{}]+", re.IGNORECASE)
_LOOKALIKE_DIGITS = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t"})
_RUN_RE = re.compile(r"(\w)\1{2,}")
_DEFAULT_LIST = "default_blocklist.txt"


def normalise(text: str) -> str:
    """NFKC then casefold: full-width, ligature and case variants compare equal."""
    return unicodedata.normalize("NFKC", text).casefold()


def disguised_tokens(text: str) -> list[str]:
    """The ``\\w+`` tokens of ``text`` where a digit touches a letter or a letter repeats 3+ times.

    Found with a vectorised compare over code points, then widened to the enclosing token:
    a few microseconds on a 3 KB text, where re-tokenising a rewritten copy of the whole text
    would cost as much as the main word scan. Any code point >= "a" counts as a letter here
    (the text is casefolded), which only lets a few extra tokens through to the exact check.
    """
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    letter = codes >= ord("a")
    digit = (codes >= ord("0")) & (codes <= ord("9"))
    signs = np.zeros(len(codes), dtype=bool)
    signs[:-1] |= (letter[:-1] & digit[1:]) | (digit[:-1] & letter[1:])
    signs[:-2] |= (codes[:-2] == codes[1:-1]) & (codes[1:-1] == codes[2:]) & letter[:-2]
    tokens, covered_until = [], 0
    for position in np.flatnonzero(signs).tolist():
        match = _WORD_RE.match(text, position)
        if position < covered_until or match is None:
            continue
        start = position
        while start > 0 and _WORD_RE.match(text[start - 1]):
            start -= 1
        tokens.append(text[start:match.end()])
        covered_until = match.end()
    return tokens


def deobfuscate(token: str) -> str:
    """Undo the cheap disguises described in the module docstring in one token."""
    if not token.isdigit():
        token = token.translate(_LOOKALIKE_DIGITS)
    return _RUN_RE.sub(r"\1", token)


def host_of(url: str) -> Optional[str]:
    """The normalised host of ``url`` (scheme optional), without a trailing dot; None if unparsable."""
    url = normalise(url.strip())
    if "://" not in url:
        url = "http://" + url.lstrip("/")
    try:
        host = urlsplit(url).hostname
    except ValueError:  # e.g. an invalid IPv6 literal "http://[zz]/"
        return None
    return host.rstrip(".") if host else None


def _domain_entry(entry: str) -> Optional[str]:
    """A list entry as a bare host: accepts ``example.com``, ``*.example.com``, a full URL."""
    entry = entry.strip()
    if entry.startswith("*."):
        entry = entry[2:]
    return host_of(entry.lstrip("."))


def read_list_file(path: str, option_name: str) -> list[str]:
    """Entries of a list file (one per line, ``#`` comments); DataError if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise DataError(f"blocklist file '{path}' not found: check the blocklist step's {option_name}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"blocklist file '{path}' cannot be read as UTF-8 text ({err}): "
                        f"fix the file or remove it from {option_name}") from None
    return [entry for entry in (line.split("#", 1)[0].strip() for line in lines) if entry]


def read_default_list() -> tuple[list[str], list[str]]:
    """The built-in list as ``(words, domains)``: its ``[words]`` and ``[domains]`` sections."""
    text = resources.files(__package__).joinpath(_DEFAULT_LIST).read_text(encoding="utf-8")
    sections: dict[str, list[str]] = {"words": [], "domains": []}
    current = None
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry.startswith("[") and entry.endswith("]"):
            current = sections[entry[1:-1]]
        elif entry and current is not None:
            current.append(entry)
    return sections["words"], sections["domains"]


class Blocklist:
    """Compiled word, phrase and domain sets with counters over a document's text."""

    def __init__(self, words: list[str], domains: list[str]):
        self.words: set[str] = set()
        self.phrases: dict[int, set[tuple[str, ...]]] = {}  # by number of words
        for entry in words:
            tokens = tuple(_WORD_RE.findall(normalise(entry)))
            if len(tokens) == 1:
                self.words.add(tokens[0])
            elif tokens:
                self.phrases.setdefault(len(tokens), set()).add(tokens)
        self.domains = {host for host in map(_domain_entry, domains) if host}

    def count_words(self, text: str, deobfuscate_tokens: bool = True) -> int:
        """Occurrences of blocked words and phrases in ``text`` (overlapping phrases each count).

        Phrases match the plain tokens only; de-obfuscation applies to single words.
        """
        text = normalise(text)
        tokens = _WORD_RE.findall(text)
        hits = sum(map(self.words.__contains__, tokens))
        for length, phrases in self.phrases.items():
            hits += sum(tuple(tokens[i:i + length]) in phrases for i in range(len(tokens) - length + 1))
        if deobfuscate_tokens:
            hits += sum(1 for token in disguised_tokens(text)
                        if token not in self.words and deobfuscate(token) in self.words)
        return hits

    def is_blocked_host(self, host: Optional[str]) -> bool:
        """True if ``host`` or one of its parent domains is blocked."""
        if not host:
            return False
        labels = host.split(".")
        return any(".".join(labels[i:]) in self.domains for i in range(len(labels)))

    def count_domains(self, text: str, url: Optional[str] = None) -> int:
        """Links in ``text`` to blocked hosts, plus one if the document's own ``url`` is blocked."""
        hits = 0
        if "://" in text or "www." in text.lower():  # skip the regex scan on most documents
            hits = sum(self.is_blocked_host(host_of(link)) for link in _URL_RE.findall(text))
        return hits + (1 if url and self.is_blocked_host(host_of(url)) else 0)


@dataclass
class BlocklistOptions:
    """Options of the ``blocklist`` step."""

    word_files: list[str] = option([], "files of blocked words or phrases, one per line (# comments)")
    domain_files: list[str] = option([], "files of blocked domains, one per line; subdomains are blocked too")
    use_default: bool = option(True, "also use the short built-in list (default_blocklist.txt)")
    min_word_hits: int = option(1, "drop at this many blocked-word occurrences (C4: any = 1; 0 = no word check)")
    min_domain_hits: int = option(1, "drop at this many links to blocked domains (0 = no domain check)")
    deobfuscate: bool = option(True, "also match look-alike digits (sh1t) and stretched letters (fuuuck)")
    url_field: str = option("url", "meta field with the document's own URL, checked as a link ('' = none)")


@register_step("blocklist", BlocklistOptions, "drop documents with blocked words or links to blocked domains")
class BlocklistStep(DocStep):
    """Drops a document whose blocked-word or blocked-link count reaches its threshold."""

    def __init__(self, options: BlocklistOptions):
        self.options = options
        if options.min_word_hits < 0 or options.min_domain_hits < 0:
            raise ConfigError("blocklist step: min_word_hits and min_domain_hits must be >= 0 (0 turns a check off)")
        words = [w for path in options.word_files for w in read_list_file(path, "word_files")]
        domains = [d for path in options.domain_files for d in read_list_file(path, "domain_files")]
        if options.use_default:
            default_words, default_domains = read_default_list()
            words += default_words
            domains += default_domains
        self.blocklist = Blocklist(words, domains)
        if not (self.blocklist.words or self.blocklist.phrases or self.blocklist.domains):
            raise ConfigError("blocklist step has no entries: give word_files or domain_files, "
                              "or set use_default: true")

    def __call__(self, doc: Document) -> Union[Document, Drop]:
        opts = self.options
        if opts.min_domain_hits:
            url = doc.meta.get(opts.url_field) if opts.url_field else None
            hits = self.blocklist.count_domains(doc.text, url if isinstance(url, str) else None)
            if hits >= opts.min_domain_hits:
                return Drop("blocked_domain", f"{hits} link(s) to blocked domains >= {opts.min_domain_hits}")
        if opts.min_word_hits:
            hits = self.blocklist.count_words(doc.text, opts.deobfuscate)
            if hits >= opts.min_word_hits:
                return Drop("blocked_words", f"{hits} blocked word(s) >= {opts.min_word_hits}")
        return doc
