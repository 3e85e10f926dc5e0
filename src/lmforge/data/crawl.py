"""A polite, deterministic web crawler (source kind ``crawl``).

``crawl(cfg)`` walks breadth-first from ``cfg.start_urls`` and yields one item per URL it
takes off the queue: a ``Document`` (the page's main text) or a ``BadDocument`` whose reason
says why there is no document, so a crawl's counts always add up (docs/architecture.md,
'Documents and counts').
Fetching is standard library (``urllib``); robots.txt is parsed by ``protego`` (the ``data``
extra; ``crawl`` raises ``DataError`` naming the extra when it is missing).

Politeness:

- **robots.txt** (RFC 9309) is fetched once per host (``scheme://host:port``) with our
  User-Agent and parsed by ``protego``; ``RobotsRules.allows`` is the decision. The group
  that applies is the one whose ``User-agent`` equals our product token (the User-Agent up
  to the first ``/``), compared case-insensitively, all such groups combined; else the ``*``
  group; else no rules (section 2.2.1). A group named by a mere prefix of our token
  (``lmforge`` for ``lmforge-crawler``) is not ours. Within the group the rule with the
  longest path pattern wins, ``allow`` on a tie; ``*`` matches any run of characters, a
  final ``$`` anchors the end; paths are compared after percent-encoding normalisation
  (section 2.2.2-2.2.3); ``/robots.txt`` itself is always allowed. Status handling follows
  section 2.3.1: 2xx: parse it (at most the first 500 KiB, the minimum the RFC asks parsers
  to read, as UTF-8); 3xx: redirects are followed (urllib allows 10, the RFC asks for at
  least 5); 4xx ("unavailable", including 401 and 403): everything is allowed; 5xx, 429 or
  a network error after all retries ("unreachable"): everything on the host is disallowed.
  The last rule is the RFC's ("MUST assume complete disallow"; 429 is treated like a 5xx,
  which the RFC permits and is the polite reading), though it means an unreachable host
  gives ``robots_disallowed`` rather than ``fetch_failed``.
- **Rate limit**: at least ``delay_seconds`` between the end of one request to a host and
  the start of the next, or the ``Crawl-delay`` (decimals allowed) or ``Request-rate`` of
  the robots.txt group that applies to us when larger. These are not part of RFC 9309; as
  Bing and Yandex read them, only our group's values count when the file has a group for
  us (the ``*`` group's Crawl-delay is then not used). The crawl is single-threaded and
  keeps BFS order, so a slow host slows it.
- **Retries**: a connection error, timeout, 429 or 5xx is retried ``retries`` times; the
  n-th retry waits ``backoff_seconds * 2**(n-1)``, or the server's ``Retry-After`` (seconds
  or an HTTP date) when that is longer. A Retry-After over ``MAX_RETRY_AFTER_SECONDS`` is
  not shortened: the URL fails (``fetch_failed``) instead of coming back sooner than asked.
- Every request sends ``cfg.user_agent``; only http and https URLs are followed.

Order and limits: start URLs have depth 0, links of a depth-d page depth d+1, and links
are followed while depth <= ``max_depth``, in document order. ``max_pages`` counts page
requests (not robots.txt, and not URLs that robots.txt disallowed, which are never
requested). ``same_domain`` keeps links and redirects on the start URLs' hosts. URLs are
normalised (fragment and user info dropped, relative links resolved against the page or
its ``<base href>``, scheme and host lower-cased, default port dropped, empty path ``/``,
non-ASCII percent-encoded), and a URL is queued at most once, so no page is fetched twice.
Links marked ``rel="nofollow"``, and all links of a page with ``<meta name="robots"
content="nofollow">``, are not followed.

Reason codes of the ``BadDocument``s: ``robots_disallowed``; ``fetch_failed`` (connection
error, timeout, 429 or 5xx after all retries); ``http_error`` (another 4xx such as 404,
not retried); ``redirected`` (3xx: the target is queued as its own URL, at the same depth,
unless seen or off-domain); ``not_html`` (Content-Type not text/html or
application/xhtml+xml; the body is not downloaded); ``too_large`` (over ``max_bytes``);
``no_main_text`` (the extractor found no main text; the page's links are still followed).

Document: ``id`` and ``meta["source"]`` and ``meta["url"]`` are the normalised URL;
``meta`` also has ``depth``, ``fetched_at`` (UTC, ISO 8601) and ``status`` (HTTP status).
"""

from __future__ import annotations

import email.utils
import http.client
import math
import re
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import Message
from html.parser import HTMLParser
from types import ModuleType
from typing import Any, Callable, Optional, Union
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from lmforge.config import CrawlConfig
from lmforge.data.document import BadDocument, Document
from lmforge.errors import ConfigError

Item = Union[Document, BadDocument]
Extractor = Callable[[str, str], Optional[str]]

ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309 section 2.5: parsers must read at least 500 KiB
MAX_RETRY_AFTER_SECONDS = 60.0
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 characters that may stay as they are in a path or query; '%' keeps existing escapes.
_URL_SAFE = "/%:@!$&'()*+,;=-._~"
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


# --------------------------------------------------------------------------- URLs and links


def normalize_url(url: str, base: str = "") -> Optional[str]:
    """``url`` (resolved against ``base``) as an absolute, normalised http(s) URL; None if not one."""
    try:
        parts = urlsplit(urljoin(base, url.strip()) if base else url.strip())
        scheme = parts.scheme.lower()
        host, port = parts.hostname, parts.port  # hostname is lower-cased; port may raise
        if scheme not in _DEFAULT_PORTS or not host:
            return None
        host = host.encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        return None
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = quote(parts.path or "/", safe=_URL_SAFE)
    query = quote(parts.query, safe=_URL_SAFE + "?")
    return urlunsplit((scheme, netloc, path, query, ""))


def host_of(url: str) -> str:
    """``scheme://netloc`` of a normalised URL: the unit robots.txt and the rate limit apply to."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.base_href: Optional[str] = None
        self.nofollow = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "base" and self.base_href is None and values.get("href"):
            self.base_href = values["href"]
        elif tag in ("a", "area") and values.get("href"):
            if "nofollow" not in values.get("rel", "").lower().split():
                self.hrefs.append(values["href"])
        elif tag == "meta" and values.get("name", "").lower() == "robots":
            self.nofollow |= "nofollow" in values.get("content", "").lower()


def extract_links(html: str, page_url: str) -> list[str]:
    """Normalised http(s) links of a page, in document order, each once (nofollow honoured)."""
    parser = _LinkParser()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):
        pass  # html.parser gives up on some broken markup: keep the links found before it
    if parser.nofollow:
        return []
    base = urljoin(page_url, parser.base_href) if parser.base_href else page_url
    links = (normalize_url(href, base) for href in parser.hrefs)
    return list(dict.fromkeys(link for link in links if link))


# --------------------------------------------------------------------------- robots.txt


# User-agent spellings protego accepts (RFC 9309 writes "user-agent"); see _group_names.
_USER_AGENT_FIELDS = ("user-agent", "useragent", "user agent")


def require_protego() -> ModuleType:
    """The robots.txt parser, or ``DataError`` saying which extra installs it."""
    from lmforge.data.readers.base import require  # imported late: readers are optional

    return require("protego", "crawling (the robots.txt parser)", extra="data")


def product_token(user_agent: str) -> str:
    """The name robots.txt groups are matched on: the User-Agent before its first ``/``."""
    return user_agent.split("/", 1)[0].strip()


def _group_names(text: str) -> set[str]:
    """The lower-cased values of the file's User-agent lines (comments stripped)."""
    names = set()
    for line in text.splitlines():
        key, sep, value = line.split("#", 1)[0].partition(":")
        if sep and key.strip().lower() in _USER_AGENT_FIELDS and value.strip():
            names.add(value.strip().lower())
    return names


class RobotsRules:
    """What one host's robots.txt lets one user agent do (RFC 9309, see the module docstring).

    ``RobotsRules.parse(text, user_agent)`` reads a robots.txt; ``RobotsRules.everything(allowed,
    origin)`` stands for a missing (allow all) or unreachable (disallow all) one.
    ``allows(url)`` is the crawler's decision for a URL of that host.
    """

    def __init__(self, parser: Any, group: str, allow_all: bool, crawl_delay: float, origin: str) -> None:
        self._parser = parser  # a protego.Protego, or None: ``allow_all`` decides
        self._group = group  # the name we query protego with: our token, or "" (only ``*`` applies)
        self._allow_all = allow_all
        self.crawl_delay = crawl_delay  # seconds between requests the file asks of us; 0: none
        self.origin = origin  # how we got the rules, for messages

    @classmethod
    def everything(cls, allowed: bool, origin: str) -> "RobotsRules":
        return cls(None, "", allowed, 0.0, origin)

    @classmethod
    def parse(cls, text: str, user_agent: str, origin: str = "robots.txt") -> "RobotsRules":
        parser = require_protego().Protego.parse(text)
        token = product_token(user_agent).lower()
        # protego picks the group whose name occurs longest in the name it is given, so a
        # group named by a prefix of our token would also match. RFC 9309 matches the token
        # itself: ask with the token only when a group has exactly that name (its score then
        # beats any prefix's), else with "" which only ``*`` matches.
        group = token if token and token in _group_names(text) else ""
        delay = parser.crawl_delay(group) or 0.0
        rate = parser.request_rate(group)
        if rate is not None and rate.requests > 0:
            delay = max(delay, rate.seconds / rate.requests)
        return cls(parser, group, True, float(delay), origin)

    def allows(self, url: str) -> bool:
        """Whether the rules let us fetch ``url`` (an absolute URL on this host)."""
        if self._parser is None:
            return self._allow_all
        if urlsplit(url).path == "/robots.txt":
            return True  # RFC 9309 2.2.2: implicitly allowed (protego before 0.7 applied the rules)
        return self._parser.can_fetch(url, self._group)


# --------------------------------------------------------------------------- fetching


@dataclass
class _Reply:
    """The end of one fetch, after any retries."""

    status: int = 0  # the last HTTP status; 0 when the server never answered
    headers: Optional[Message] = None
    body: bytes = b""
    skip: str = ""  # "not_html" or "too_large": the body was not (fully) downloaded
    failure: str = ""  # set when the fetch failed after all tries: what went wrong last
    attempts: int = 0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # Pages: a redirect comes back as a 3xx so that its target goes through the queue
    # (robots.txt, same_domain, seen-set) like any other link.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        return None


def _retry_after_seconds(headers: Optional[Message]) -> Optional[float]:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        seconds = float(value)  # RFC 9110 says whole seconds; a decimal is read leniently
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _decode(body: bytes, headers: Optional[Message]) -> str:
    charset = headers.get_content_charset() if headers is not None else None
    if not charset:
        match = _META_CHARSET.search(body[:2048])
        charset = match.group(1).decode("ascii") if match else "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


def _looks_like_html(body: bytes) -> bool:
    start = body[:256].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html"))


class _Fetcher:
    """HTTP GETs with the crawl's user agent, per-host rate limit and retries."""

    def __init__(self, cfg: CrawlConfig) -> None:
        self.cfg = cfg
        self._page_opener = urllib.request.build_opener(_NoRedirect)
        self._robots_opener = urllib.request.build_opener()  # RFC 9309: follow robots.txt redirects
        self._last_done: dict[str, float] = {}  # host -> monotonic time its last request ended
        self._hold_until: dict[str, float] = {}  # host -> no request before (retry backoff)
        self._robots: dict[str, RobotsRules] = {}

    def _delay(self, host: str) -> float:
        robots = self._robots.get(host)
        return max(self.cfg.delay_seconds, robots.crawl_delay if robots else 0.0)

    def _wait_turn(self, host: str) -> None:
        ready = max(self._last_done.get(host, -math.inf) + self._delay(host), self._hold_until.get(host, -math.inf))
        pause = ready - time.monotonic()
        if pause > 0:
            time.sleep(pause)

    def fetch(self, url: str, max_bytes: int, *, robots_txt: bool = False) -> _Reply:
        """GET ``url`` politely; pages must be HTML, robots.txt is read (truncated) whatever it is."""
        host = host_of(url)
        opener = self._robots_opener if robots_txt else self._page_opener
        request = urllib.request.Request(url, headers={"User-Agent": self.cfg.user_agent})
        last_problem = ""
        for attempt in range(self.cfg.retries + 1):
            self._wait_turn(host)
            retry_after = None
            try:
                try:
                    response = opener.open(request, timeout=self.cfg.timeout_seconds)
                except urllib.error.HTTPError as err:  # 3xx (pages), 4xx, 5xx: still a response
                    response = err
                try:
                    reply = self._read(response, max_bytes, robots_txt)
                finally:
                    response.close()
            except ValueError as err:  # a URL http.client refuses: retrying cannot help
                return _Reply(failure=f"bad URL ({err})", attempts=attempt + 1)
            except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, resets
                last_problem = f"connection error: {getattr(err, 'reason', None) or err}"
            else:
                if reply.status != 429 and reply.status < 500:
                    reply.attempts = attempt + 1
                    return reply
                last_problem = f"HTTP {reply.status}"
                retry_after = _retry_after_seconds(reply.headers)
            finally:
                self._last_done[host] = time.monotonic()
            if attempt == self.cfg.retries:
                break
            wait = self.cfg.backoff_seconds * 2 ** attempt
            if retry_after is not None:
                if retry_after > MAX_RETRY_AFTER_SECONDS:
                    return _Reply(failure=f"{last_problem} with Retry-After {retry_after:.0f} s, more than "
                                          f"the {MAX_RETRY_AFTER_SECONDS:.0f} s we wait", attempts=attempt + 1)
                wait = max(wait, retry_after)
            self._hold_until[host] = self._last_done[host] + wait
        return _Reply(failure=last_problem, attempts=self.cfg.retries + 1)

    @staticmethod
    def _read(response, max_bytes: int, robots_txt: bool) -> _Reply:  # noqa: ANN001
        status, headers = response.getcode(), response.headers
        reply = _Reply(status=status, headers=headers)
        if not 200 <= status < 300:
            return reply  # the body of an error page is of no use
        content_type = headers.get("Content-Type")
        if not robots_txt:
            if content_type and headers.get_content_type() not in _HTML_TYPES:
                reply.skip = "not_html"
                return reply
            length = headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                reply.skip = "too_large"
                return reply
        body = response.read(max_bytes + 1)
        if len(body) > max_bytes:
            if not robots_txt:
                reply.skip = "too_large"
                return reply
            body = body[:max_bytes]
        if not robots_txt and not content_type and not _looks_like_html(body):
            reply.skip = "not_html"
            return reply
        reply.body = body
        return reply

    def robots_for(self, url: str) -> RobotsRules:
        """The robots.txt rules of ``url``'s host, fetched on first use (see the module docstring)."""
        host = host_of(url)
        if host not in self._robots:
            self._robots[host] = self._load_robots(host)
        return self._robots[host]

    def _load_robots(self, host: str) -> RobotsRules:
        reply = self.fetch(host + "/robots.txt", ROBOTS_MAX_BYTES, robots_txt=True)
        if reply.failure:  # RFC 9309 2.3.1.4: unreachable -> assume complete disallow
            return RobotsRules.everything(False, f"robots.txt, unreachable after {reply.attempts} tries "
                                                 f"({reply.failure}), which RFC 9309 reads as disallow all")
        if not 200 <= reply.status < 300:  # RFC 9309 2.3.1.3: unavailable (4xx) -> allow all
            return RobotsRules.everything(True, f"robots.txt (HTTP {reply.status})")
        # RFC 9309 2.2: the file is UTF-8; a byte order mark is not part of the first line.
        return RobotsRules.parse(reply.body.decode("utf-8-sig", errors="replace"), self.cfg.user_agent)


# --------------------------------------------------------------------------- the crawl


def _check(cfg: CrawlConfig) -> list[str]:
    if not cfg.start_urls:
        raise ConfigError("crawl.start_urls is empty: give at least one http:// or https:// URL")
    start = []
    for index, url in enumerate(cfg.start_urls):
        normal = normalize_url(url) if isinstance(url, str) else None
        if normal is None:
            raise ConfigError(f"crawl.start_urls[{index}] {url!r} is not an http(s) URL: "
                              "write it as http://host/path or https://host/path")
        start.append(normal)
    for name, value, lowest in (("max_pages", cfg.max_pages, 1), ("max_depth", cfg.max_depth, 0),
                                ("retries", cfg.retries, 0), ("max_bytes", cfg.max_bytes, 1),
                                ("delay_seconds", cfg.delay_seconds, 0), ("backoff_seconds", cfg.backoff_seconds, 0)):
        if value < lowest:
            raise ConfigError(f"crawl.{name} must be at least {lowest}, got {value}")
    if cfg.timeout_seconds <= 0:
        raise ConfigError(f"crawl.timeout_seconds must be positive, got {cfg.timeout_seconds}")
    if not cfg.user_agent.strip():
        raise ConfigError("crawl.user_agent is empty: name your crawler (robots.txt rules are matched on it)")
    return list(dict.fromkeys(start))


def crawl(cfg: CrawlConfig, *, extract_main_text: Optional[Extractor] = None) -> Iterator[Item]:
    """Crawl from ``cfg.start_urls``; yield a Document or a BadDocument per URL taken off the queue.

    ``extract_main_text(html, url)`` turns a page into its main text (None: there is none);
    the default is ``lmforge.data.readers.html.extract_main_text``. A bad ``cfg`` raises
    ``ConfigError`` here, before anything is fetched, and a missing ``protego`` ``DataError``.
    """
    start = _check(cfg)
    require_protego()  # DataError naming the extra now, before anything is fetched
    if extract_main_text is None:
        from lmforge.data.readers.html import extract_main_text  # imported late: the readers are optional
    return _crawl(cfg, start, extract_main_text)


def _crawl(cfg: CrawlConfig, start: list[str], extract: Extractor) -> Iterator[Item]:
    fetcher = _Fetcher(cfg)
    home_hosts = {host_of(url) for url in start}
    queue = deque((url, 0) for url in start)
    seen = set(start)

    def may_follow(url: str) -> bool:
        return url not in seen and (not cfg.same_domain or host_of(url) in home_hosts)

    num_fetched = 0
    while queue and num_fetched < cfg.max_pages:
        url, depth = queue.popleft()
        robots = fetcher.robots_for(url)
        if not robots.allows(url):
            yield BadDocument(url, "robots_disallowed", f"{url} is disallowed for user agent "
                                                        f"{cfg.user_agent!r} by {robots.origin}: it is not fetched; "
                                                        "ask the site owner or crawl other pages")
            continue
        num_fetched += 1
        reply = fetcher.fetch(url, cfg.max_bytes)
        if reply.failure:
            yield BadDocument(url, "fetch_failed", f"{url} could not be fetched after {reply.attempts} tries "
                                                   f"({reply.failure}): check the URL or raise crawl.retries")
        elif reply.status in _REDIRECT_STATUSES:
            location = reply.headers.get("Location", "") if reply.headers is not None else ""
            target = normalize_url(location, url) if location else None
            if target is None:
                outcome = "a missing or non-http(s) Location, not followed"
            elif may_follow(target):
                seen.add(target)
                queue.appendleft((target, depth))  # next, as if the redirect had been followed
                outcome = f"{target}, queued as its own page"
            else:
                outcome = f"{target}, not followed (already queued or on another host)"
            yield BadDocument(url, "redirected", f"{url} redirects (HTTP {reply.status}) to {outcome}: "
                                                 "nothing to fix")
        elif not 200 <= reply.status < 300:
            yield BadDocument(url, "http_error", f"{url} answered HTTP {reply.status} (not retried): "
                                                 "fix or remove the link to it")
        elif reply.skip == "not_html":
            content_type = reply.headers.get("Content-Type", "none") if reply.headers is not None else "none"
            yield BadDocument(url, "not_html", f"{url} is not HTML (Content-Type {content_type}): "
                                                 "the crawler only reads web pages")
        elif reply.skip == "too_large":
            yield BadDocument(url, "too_large", f"{url} is larger than crawl.max_bytes={cfg.max_bytes}: "
                                                "skipped; raise crawl.max_bytes to keep it")
        else:
            html = _decode(reply.body, reply.headers)
            if depth < cfg.max_depth:
                for link in extract_links(html, url):
                    if may_follow(link):
                        seen.add(link)
                        queue.append((link, depth + 1))
            text = extract(html, url)
            if text is None or not text.strip():
                yield BadDocument(url, "no_main_text", f"{url} has no main text the extractor could find: "
                                                   "nothing to keep")
            else:
                fetched_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
                yield Document(url, text, {"source": url, "url": url, "depth": depth,
                                           "fetched_at": fetched_at, "status": reply.status})
