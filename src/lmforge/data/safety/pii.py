"""The ``pii`` step: mask e-mail addresses, phone numbers, IP addresses, card numbers and API keys.

Each kind is found by a regular expression and then *validated* in Python, so that the cheap
pattern can be generous while the mask stays precise (the approach of BigCode's PII
redaction for The Stack/StarCoder: regexes plus checks, placeholders in the text):

- **API keys and secrets**, masked first so the other patterns never see them: AWS access
  key ids (``AKIA``/``ASIA`` + 16), GitHub tokens (``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``
  + 36 or more, ``github_pat_``), Slack tokens (``xoxb-``, ``xoxp-``, ``xoxa-``, ``xoxr-``,
  ``xoxs-``), OpenAI-style ``sk-`` keys (20+ characters after the prefix), Google ``AIza`` + 35,
  PEM private key blocks (``-----BEGIN ... PRIVATE KEY-----`` to its END line, or to the end
  of the base64 lines when the block is cut off), and values of assignments such as
  ``api_key = "..."``/``secret: ...``/``token=...`` when the value is 20+ characters, holds
  letters and digits, has an unbroken run of 16+ characters between ``. _ / -`` (dotted names
  and paths do not), and has at least 3.5 bits of Shannon entropy per character
  (placeholders like ``your_api_key_here`` do not). Only the value is replaced.
- **E-mail addresses**: ``local@domain.tld`` with an alphabetic TLD of 2+ letters.
- **Card numbers**: 13-19 digits, optionally grouped by single spaces or dashes, that pass
  the Luhn check and start with 2-6 (the major networks' prefixes: Mastercard 2/5, Amex 3,
  Visa 4, Discover 6). A random digit run passes Luhn one time in ten; ISBN-13s start with 9.
- **IP addresses**: IPv4 as four dot-separated decimal octets 0-255 without leading zeros,
  not part of a longer dotted run (``1.2.3.4.5``) and not glued to a word (``v1.2.3.4``).
  A bare ``1.2.3.4`` *is* masked even if it was a version number: the shapes are identical
  and a leaked address costs more than a masked version string. IPv6 candidates must parse
  with :mod:`ipaddress`, hold a decimal digit, and have 3+ colons or a 3+ hex-digit group,
  so Python slices (``a[1::2]``), C++ scopes (``face::add``) and clock times are left alone
  (nor is ``::1``, which looks like a slice). ``keep_private_ips`` leaves addresses that are
  not globally routable (``ipaddress`` ``is_global`` false: private, loopback, link-local,
  documentation ranges) unmasked: they identify no one (StarCoder's redaction did the same).
- **Phone numbers**: international ``+CC`` numbers with 8-15 digits in all (E.164 allows 15),
  digits grouped by spaces, dots, dashes or a parenthesised area code; North American
  ``(555) 123-4567`` / ``555-123-4567`` / ``555.123.4567`` (area code and exchange 2-9,
  one separator style); and trunk-prefixed national numbers that start with ``0`` and have
  9-12 digits in 2+ groups (``020 7946 0958``, ``030/1234567``, ``01 23 45 67 89``). Not
  masked on purpose: ungrouped digit runs (``5551234567`` may be any id), space-separated
  numbers not starting with 0 (``100 200 3000`` is more often a table than a phone), dates.

Counts of what was masked go to ``doc.meta["pii"]`` (``{"email": 2, "ip": 1}``, only kinds
found; the key is absent when nothing was). The step never drops a document.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Optional, Union

from lmforge.config import option
from lmforge.data.document import Document
from lmforge.data.steps import DocStep, Drop, register_step

# ---------------------------------------------------------------------------- patterns
# ASCII digits only: \d would also match other scripts' digits, which no phone or card uses.

# Speed note: Python's re skips quickly to candidate positions only when a pattern starts
# with a literal or a character class, so "not glued to the previous character" checks sit
# *after* the first character as lookbehinds over two characters ("[0-9](?<![\w-][0-9])"),
# not in front of it; that makes each scan ~4x faster on ordinary text.

# Token shapes with a fixed prefix, as one alternation so the text is scanned once.
_API_TOKEN_RE = re.compile("|".join([
    r"(?:AKIA|ASIA)(?<!\w....)[0-9A-Z]{16}\b",              # AWS access key id
    r"gh[pousr]_(?<!\w....)[A-Za-z0-9]{36,255}\b",          # GitHub classic tokens
    r"github_pat_(?<!\w...........)[A-Za-z0-9_]{22,255}\b",  # GitHub fine-grained tokens
    r"xox[bpars]-(?<!\w.....)[A-Za-z0-9-]{10,}",            # Slack
    r"sk-(?<!\w...)(?:proj-|ant-)?[A-Za-z0-9_-]{20,}",      # OpenAI-style secret keys
    r"AIza(?<!\w....)[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])",   # Google API keys
]))
_PRIVATE_KEY_RE = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
    r"(?:(?:(?!-----).)*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|[A-Za-z0-9+/=\s]*)", re.DOTALL)
# A name holding one of these words, then ":" or "=", then the value (searched in ASCII-lowered
# text, so "API_KEY" and "Secret" match too); group "value" is replaced if it looks random.
_SECRET_ASSIGNMENT_RE = re.compile(
    r"(?:key|secret|token|passw|auth)[\w.-]*[\"']?\s*[:=]\s*[\"']?(?P<value>[a-z0-9_\-+/=.]{20,})")
_NAME_SEPARATORS_RE = re.compile(r"[._/-]")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_EMAIL_RE = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![\w-])")
_CARD_RE = re.compile(r"[0-9](?<![\w-][0-9])(?:[ -]?[0-9]){12,18}(?![\w-])")
_IPV4_RE = re.compile(r"[0-9](?<![\w.][0-9])[0-9]{0,2}\.(?:[0-9]{1,3}\.){2}[0-9]{1,3}(?!\.?\w)")
# Any run of hex digits, colons and dots (embedded IPv4) that ipaddress then validates.
_IPV6_RE = re.compile(r"[0-9A-Fa-f:](?<![\w:.][0-9A-Fa-f:])(?:[0-9A-Fa-f:.]*[0-9A-Fa-f:])?(?![\w:])")
_DELETE_DIGITS = str.maketrans("", "", "0123456789")
_NOT_GLUED_AFTER = r"(?![\w]|[.\-/][0-9])"
_PHONE_RES = [
    # international: +CC then groups (8-15 digits checked in _valid_phone)
    re.compile(r"\+(?<![\w+]\+)[1-9][0-9]{0,2}(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,5})){1,6}" + _NOT_GLUED_AFTER),
    # North American: (415) 555-0132, 415-555-0132, 415.555.0132 (one separator style)
    re.compile(r"\((?<![\w+.\-/]\()[2-9][0-9]{2}\)[ -]?[2-9][0-9]{2}[ -][0-9]{4}" + _NOT_GLUED_AFTER),
    re.compile(r"[2-9](?<![\w+.\-/(][2-9])[0-9]{2}(?P<sep>[-.])[2-9][0-9]{2}(?P=sep)[0-9]{4}" + _NOT_GLUED_AFTER),
    # trunk-prefixed national numbers: 0 then 2+ groups (9-12 digits checked in _valid_phone)
    re.compile(r"0(?<![\w+.\-/(]0)[0-9]{1,4}(?:[ /-][0-9]{2,8}){1,4}" + _NOT_GLUED_AFTER),
]


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check that every payment card number satisfies."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``'s character distribution."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _looks_random(value: str) -> bool:
    """A generated secret, not a placeholder, a dotted name or a path (see the module docstring)."""
    # Code assigns "token = tokenizer.encode_batch2" and "key: /usr/lib/python3.11": their pieces
    # between separators are short, where a generated key is one long unbroken run.
    longest_piece = max(len(piece) for piece in _NAME_SEPARATORS_RE.split(value))
    return (longest_piece >= 16 and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
            and shannon_entropy(value) >= 3.5)


def _digits(text: str) -> str:
    return "".join(c for c in text if "0" <= c <= "9")


def _valid_card(match: str) -> bool:
    digits = _digits(match)
    # one separator style at most: "4111 1111-1111 1111" is not how cards are written
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and not ("-" in match and " " in match) \
        and luhn_valid(digits)


def _valid_phone(match: str) -> bool:
    digits = _digits(match)
    if match.startswith("+"):
        return 8 <= len(digits) <= 15
    if match.startswith("0"):
        return 9 <= len(digits) <= 12
    return True  # the North American patterns fix the digit count themselves


@dataclass
class PiiOptions:
    """Options of the ``pii`` step."""

    emails: bool = option(True, "mask e-mail addresses")
    phones: bool = option(True, "mask phone numbers (+CC international, North American, 0-prefixed national)")
    ips: bool = option(True, "mask IPv4 and IPv6 addresses")
    credit_cards: bool = option(True, "mask Luhn-valid 13-19 digit card numbers")
    api_keys: bool = option(True, "mask API keys, tokens, private key blocks and secret assignments")
    keep_private_ips: bool = option(True, "leave non-global IPs (private, loopback, link-local, "
                                          "documentation) unmasked")
    email_token: str = option("<EMAIL>", "replacement of an e-mail address")
    phone_token: str = option("<PHONE>", "replacement of a phone number")
    ip_token: str = option("<IP>", "replacement of an IP address")
    credit_card_token: str = option("<CREDIT_CARD>", "replacement of a card number")
    api_key_token: str = option("<API_KEY>", "replacement of an API key or secret")


@register_step("pii", PiiOptions, "mask e-mails, phones, IPs, card numbers and API keys (never drops)")
class PiiStep(DocStep):
    """Replaces personal data and secrets with placeholder tokens and counts them in meta["pii"]."""

    def __init__(self, options: PiiOptions):
        self.options = options

    def mask(self, text: str) -> tuple[str, dict[str, int]]:
        """``text`` with every enabled kind masked, and the count of each kind masked."""
        opts = self.options
        counts: dict[str, int] = {}

        def substitute(kind: str, pattern: re.Pattern, render: Callable[[re.Match], Optional[str]]) -> None:
            """Replace each match by ``render(match)``; None keeps the match (it failed validation)."""
            nonlocal text

            def replace(match: re.Match) -> str:
                replacement = render(match)
                if replacement is None:
                    return match.group()
                counts[kind] = counts.get(kind, 0) + 1
                return replacement

            text = pattern.sub(replace, text)

        def token_if(valid: Callable[[str], bool], token: str) -> Callable[[re.Match], Optional[str]]:
            return lambda match: token if valid(match.group()) else None

        # Cheap substring and digit-count checks skip the regex scans that cannot match.
        num_digits = len(text) - len(text.translate(_DELETE_DIGITS))
        if opts.api_keys:
            substitute("api_key", _API_TOKEN_RE, lambda match: opts.api_key_token)
            if "PRIVATE KEY-----" in text:
                substitute("api_key", _PRIVATE_KEY_RE, lambda match: opts.api_key_token)
            # ASCII-only lowering keeps every offset, so spans found in `lowered` fit `text`
            lowered = text.lower() if text.isascii() else text.translate(_ASCII_LOWER)
            if any(word in lowered for word in ("key", "secret", "token", "passw", "auth")):
                text = self._mask_secret_values(text, lowered, counts)
        if opts.emails and "@" in text:
            substitute("email", _EMAIL_RE, lambda match: opts.email_token)
        if opts.credit_cards and num_digits >= 13:
            substitute("credit_card", _CARD_RE, token_if(_valid_card, opts.credit_card_token))
        if opts.ips and num_digits >= 4:
            if "." in text:
                substitute("ip", _IPV4_RE, token_if(self._is_maskable_ip, opts.ip_token))
            if "::" in text or text.count(":") >= 7:
                substitute("ip", _IPV6_RE, token_if(lambda candidate: ":" in candidate and
                                                    self._is_maskable_ip(candidate), opts.ip_token))
        if opts.phones and num_digits >= 8:
            for pattern in _PHONE_RES:
                substitute("phone", pattern, token_if(_valid_phone, opts.phone_token))
        return text, counts

    def _mask_secret_values(self, text: str, lowered: str, counts: dict[str, int]) -> str:
        """Replace the values of secret-looking assignments; the names stay, so code still reads."""
        pieces, last = [], 0
        for match in _SECRET_ASSIGNMENT_RE.finditer(lowered):
            start, end = match.span("value")
            if _looks_random(text[start:end]):
                pieces += [text[last:start], self.options.api_key_token]
                last = end
                counts["api_key"] = counts.get("api_key", 0) + 1
        return "".join(pieces) + text[last:] if pieces else text

    def _is_maskable_ip(self, candidate: str) -> bool:
        """Whether an IPv4/IPv6-shaped ``candidate`` is a real address that should be masked."""
        if ":" in candidate:
            if candidate.count(":") < 2:
                return False
            groups = candidate.split(":")
            # C++ scopes ("face::add") and slices ("a[1::2]") parse as IPv6 too
            if not any(c.isdigit() for c in candidate) or (
                    candidate.count(":") < 3 and max(len(g) for g in groups) < 3):
                return False
        elif any(len(octet) > 1 and octet[0] == "0" for octet in candidate.split(".")):
            return False  # leading zeros: dates, ids or octal, not how addresses are written
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            return False
        return not (self.options.keep_private_ips and not address.is_global)

    def __call__(self, doc: Document) -> Union[Document, Drop]:
        text, counts = self.mask(doc.text)
        if not counts:
            return doc
        return Document(doc.id, text, {**doc.meta, "pii": counts})
