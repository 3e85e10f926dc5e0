"""A polite, deterministic web crawler (source kind ``crawl``), standard library only.

``crawl(cfg)`` walks breadth-first from ``cfg.start_urls`` and yields one item per URL it
takes off the queue: a ``Document`` (the page's main text) or a ``BadDocument`` whose reason
says why there is no document, so a crawl's counts always add up (DESIGN.md section 2).

Politeness:

- **robots.txt** is fetched once per host (``scheme://host:port``) with our User-Agent and
  parsed by ``urllib.robotparser``; its rules for our product token (the User-Agent up to
  the first ``/``) apply, else the ``*`` rules. Status handling follows RFC 9309 section
  2.3.1: 2xx: parse it (at most the first 500 KiB, the minimum the RFC asks parsers to
  read); 3xx: redirects are followed (urllib allows 10); 4xx ("unavailable", including 401
  and 403): everything is allowed; 5xx, 429 or a network error after all retries
  ("unreachable"): everything on the host is disallowed. The last rule is the RFC's
  ("MUST assume complete disallow"), though it means an unreachable host gives
  ``robots_disallowed`` rather than ``fetch_failed``.
  Limits of ``urllib.robotparser``: rules are matched first-match in file order, not the
  RFC's longest match, and ``*``/``$`` wildcards inside paths are not understood.
- **Rate limit**: at least ``delay_seconds`` between the end of one request to a host and
  the start of the next, or the host's ``Crawl-delay`` (decimals allowed; we read it
  ourselves because ``urllib.robotparser`` only takes whole seconds) or ``Request-rate``
  when larger. The crawl is single-threaded and keeps BFS order, so a slow host slows it.
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
from typing import Callable, Optional, Union
from urllib.parse import quote, urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

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


def robots_crawl_delay(lines: list[str], user_agent: str) -> float:
    """Crawl-delay (seconds, decimals allowed) of our group in robots.txt, else of ``*``; 0 if none.

    Groups are matched as ``urllib.robotparser`` matches them: a group applies when its
    User-agent value, lower-cased, occurs in our product token (the User-Agent before ``/``).
    """
    token = user_agent.split("/")[0].lower()
    ours: Optional[float] = None
    default: Optional[float] = None
    group: list[str] = []
    reading_agents = False
    for raw in lines:
        key, _, value = raw.split("#", 1)[0].partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "user-agent":
            group = group if reading_agents else []  # consecutive User-agent lines share a group
            group.append(value.lower())
            reading_agents = True
            continue
        reading_agents = False
        if key != "crawl-delay":
            continue
        try:
            delay = float(value)
        except ValueError:
            continue
        if not math.isfinite(delay) or delay < 0:
            continue
        if ours is None and any(agent != "*" and agent in token for agent in group):
            ours = delay
        if default is None and "*" in group:
            default = delay
    return ours if ours is not None else (default or 0.0)


@dataclass
class _Robots:
    """What one host's robots.txt lets us do."""

    parser: Optional[RobotFileParser]  # None: the rule is ``allow_all``
    allow_all: bool
    crawl_delay: float
    origin: str  # how we got the rules, for messages: "robots.txt", "robots.txt unreachable (HTTP 503)"

    def allows(self, user_agent: str, url: str) -> bool:
        return self.allow_all if self.parser is None else self.parser.can_fetch(user_agent, url)


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
        self._robots: dict[str, _Robots] = {}

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

    def robots_for(self, url: str) -> _Robots:
        """The robots.txt rules of ``url``'s host, fetched on first use (see the module docstring)."""
        host = host_of(url)
        if host not in self._robots:
            self._robots[host] = self._load_robots(host)
        return self._robots[host]

    def _load_robots(self, host: str) -> _Robots:
        reply = self.fetch(host + "/robots.txt", ROBOTS_MAX_BYTES, robots_txt=True)
        if reply.failure:  # RFC 9309 2.3.1.4: unreachable -> assume complete disallow
            return _Robots(None, False, 0.0, f"robots.txt, unreachable after {reply.attempts} tries "
                                             f"({reply.failure}), which RFC 9309 reads as disallow all")
        if not 200 <= reply.status < 300:  # RFC 9309 2.3.1.3: unavailable (4xx) -> allow all
            return _Robots(None, True, 0.0, f"robots.txt (HTTP {reply.status})")
        lines = reply.body.decode("utf-8", errors="replace").splitlines()
        parser = RobotFileParser(host + "/robots.txt")
        parser.parse(lines)
        delay = robots_crawl_delay(lines, self.cfg.user_agent)
        rate = parser.request_rate(self.cfg.user_agent)
        if rate is not None and rate.requests > 0:
            delay = max(delay, rate.seconds / rate.requests)
        return _Robots(parser, True, delay, "robots.txt")


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
    ``ConfigError`` here, before anything is fetched.
    """
    start = _check(cfg)
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
        if not robots.allows(cfg.user_agent, url):
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
