"""The polite crawler against small sites served by the test itself on 127.0.0.1.

Each site is a ``ThreadingHTTPServer`` on port 0 whose handler logs every request (path,
arrival time, User-Agent), so the tests can check exactly what was fetched, in what order,
with which user agent and how far apart. Delays are a tenth of a second or less.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lmforge.config import CrawlConfig
from lmforge.data.crawl import RobotsRules, crawl, extract_links, normalize_url
from lmforge.data.document import BadDocument, Document
from lmforge.errors import ConfigError, DataError

AGENT = "lmforge-test/1.0 (+http://127.0.0.1/bot)"
# Another crawler is shut out entirely; ours only from /private/, and must wait 0.1 s.
ROBOTS = b"User-agent: *\nDisallow: /\n\nUser-agent: lmforge-test\nDisallow: /private/\nCrawl-delay: 0.1\n"

Reply = tuple[int, dict[str, str], bytes]
Route = Callable[[int], Reply]  # how many times the path was asked for before -> the reply


def html(body: str) -> Route:
    return lambda n: (200, {"Content-Type": "text/html; charset=utf-8"}, f"<html><body>{body}</body></html>".encode())


def status(code: int, headers: dict[str, str] | None = None) -> Route:
    return lambda n: (code, headers or {}, b"")


class Site:
    """One host: fixed routes, and a log of (path, monotonic arrival time, User-Agent)."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.log: list[tuple[str, float, str]] = []
        self._asked: Counter[str] = Counter()
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                with site._lock:
                    site.log.append((self.path, time.monotonic(), self.headers.get("User-Agent", "")))
                    count = site._asked[self.path]
                    site._asked[self.path] += 1
                route = site.routes.get(self.path, status(404))
                code, headers, body = route(count)
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers and not headers.get("X-No-Length"):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()  # a short poll interval, so shutdown() returns at once

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.log]

    def times(self, path: str | None = None) -> list[float]:
        return [t for p, t, _ in self.log if path is None or p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def serve(*route_sets: dict[str, Route]) -> Iterator[list[Site]]:
    sites = [Site(routes) for routes in route_sets]
    try:
        yield sites
    finally:
        for site in sites:
            site.close()


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    # urllib honours proxy variables: requests to our 127.0.0.1 server must go straight to it.
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def paragraphs(page: str, url: str) -> str | None:
    """A stand-in main-text extractor: the <p> texts of a page, None when it has none."""
    found = re.findall(r"<p>(.*?)</p>", page)
    return "\n".join(found) if found else None


def run(cfg: CrawlConfig) -> list[Document | BadDocument]:
    return list(crawl(cfg, extract_main_text=paragraphs))


def outcomes(items: list[Document | BadDocument], base: str) -> list[tuple[str, str]]:
    return [(item.id.removeprefix(base), "doc" if isinstance(item, Document) else item.reason) for item in items]


def main_site(external: str) -> dict[str, Route]:
    big = "<p>" + "x" * 5000 + "</p>"
    return {
        "/robots.txt": lambda n: (200, {"Content-Type": "text/plain"}, ROBOTS),
        "/": html("<p>Welcome home.</p>"
                  '<a href="/a.html">A</a> <a href="b.html#top">B</a> <a href="/private/secret.html">S</a>'
                  '<a href="/flaky.html">F</a> <a href="/missing.html">M</a> <a href="/data.csv">D</a>'
                  '<a href="/big.html">L</a> <a href="/stream.html">L2</a> <a href="/moved">R</a>'
                  f'<a href="{external}/external.html">E</a> <a href="mailto:me@example.com">mail</a>'
                  '<a href="/a.html#again">A again</a> <a href="/nofollow.html" rel="nofollow">N</a>'),
        "/a.html": html('<p>Page A.</p><a href="/deep1.html">deeper</a> <a href="/">home</a>'),
        "/b.html": html('<p>Page B.</p><a href="a.html">A</a>'),
        "/c.html": html('<p>Page C.</p><a href="/deep1.html">deeper</a>'),
        "/deep1.html": html('<p>Deep one.</p><a href="/deep2.html">deeper still</a>'),
        "/deep2.html": html("<p>Deep two.</p>"),
        "/private/secret.html": html("<p>Secret.</p>"),
        "/nofollow.html": html("<p>Not followed.</p>"),
        "/flaky.html": lambda n: status(503)(n) if n < 2 else html("<p>Flaky, then fine.</p>")(n),
        "/data.csv": lambda n: (200, {"Content-Type": "text/csv"}, b"a,b\n1,2\n"),
        "/big.html": lambda n: html(big)(n),
        "/stream.html": lambda n: (200, {"Content-Type": "text/html", "X-No-Length": "1"}, big.encode()),
        "/moved": status(301, {"Location": "/c.html"}),
    }


def external_site() -> dict[str, Route]:
    return {"/external.html": html("<p>Another host.</p>")}  # no robots.txt: 404, so allowed


def config(site: Site, **overrides) -> CrawlConfig:
    values = dict(start_urls=[site.base + "/"], max_pages=100, max_depth=2, same_domain=True, delay_seconds=0.05,
                  retries=2, backoff_seconds=0.15, timeout_seconds=5.0, user_agent=AGENT, max_bytes=4000)
    return CrawlConfig(**{**values, **overrides})


# --------------------------------------------------------------------------- the whole site


def test_breadth_first_crawl_obeys_robots_retries_and_limits():
    with serve(external_site()) as (external,), serve(main_site(external.base)) as (site,):
        items = run(config(site))

    assert outcomes(items, site.base) == [
        ("/", "doc"),
        ("/a.html", "doc"),
        ("/b.html", "doc"),  # "b.html#top": relative, fragment dropped
        ("/private/secret.html", "robots_disallowed"),
        ("/flaky.html", "doc"),  # 503, 503, then 200
        ("/missing.html", "http_error"),
        ("/data.csv", "not_html"),
        ("/big.html", "too_large"),  # Content-Length over max_bytes: body not read
        ("/stream.html", "too_large"),  # no Content-Length: stopped after max_bytes + 1
        ("/moved", "redirected"),
        ("/c.html", "doc"),  # the redirect's target, fetched next at the same depth
        ("/deep1.html", "doc"),  # depth 2; its link to /deep2.html would be depth 3
    ]
    # Each page once (the flaky one three times), robots.txt once; the disallowed page, the
    # nofollow link, the depth-3 page and the other host are never asked for.
    assert site.paths() == ["/robots.txt", "/", "/a.html", "/b.html", "/flaky.html", "/flaky.html",
                            "/flaky.html", "/missing.html", "/data.csv", "/big.html", "/stream.html",
                            "/moved", "/c.html", "/deep1.html"]
    assert external.log == []
    assert {agent for _, _, agent in site.log} == {AGENT}

    home = items[0]
    assert home.text == "Welcome home."
    assert home.meta["source"] == home.meta["url"] == site.base + "/"
    assert (home.meta["depth"], home.meta["status"]) == (0, 200)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", home.meta["fetched_at"])
    assert [(d.meta["depth"], d.text) for d in items if isinstance(d, Document)][1:] == [
        (1, "Page A."), (1, "Page B."), (1, "Flaky, then fine."), (1, "Page C."), (2, "Deep one.")]
    assert "robots.txt" in items[3].message and "HTTP 301" in items[9].message

    # Rate limit: robots.txt's Crawl-delay (0.1 s) beats delay_seconds (0.05 s) for every gap.
    arrivals = site.times()
    assert min(b - a for a, b in zip(arrivals, arrivals[1:])) >= 0.1
    # Retries back off 0.15 s, then 0.3 s (both longer than the crawl delay).
    first, second, third = site.times("/flaky.html")
    assert second - first >= 0.15 and third - second >= 0.3


def test_max_pages_and_max_depth():
    with serve(external_site()) as (external,), serve(main_site(external.base)) as (site,):
        items = run(config(site, max_pages=3))
        assert outcomes(items, site.base) == [("/", "doc"), ("/a.html", "doc"), ("/b.html", "doc")]
        assert site.paths() == ["/robots.txt", "/", "/a.html", "/b.html"]

        site.log.clear()
        assert outcomes(run(config(site, max_depth=0)), site.base) == [("/", "doc")]
        assert site.paths() == ["/robots.txt", "/"]


def test_other_hosts_followed_when_same_domain_is_off():
    with serve(external_site()) as (external,), serve(main_site(external.base)) as (site,):
        items = run(config(site, same_domain=False, max_depth=1, max_pages=5))
    # Five page requests: /, a, b, flaky (counted once, retried inside), missing; private is not
    # requested so it does not count. The external link comes later in the page: not reached.
    assert outcomes(items, site.base) == [("/", "doc"), ("/a.html", "doc"), ("/b.html", "doc"),
                                          ("/private/secret.html", "robots_disallowed"), ("/flaky.html", "doc"),
                                          ("/missing.html", "http_error")]
    with serve(external_site()) as (external,), serve(main_site(external.base)) as (site,):
        items = run(config(site, same_domain=False, max_depth=1))
    assert (external.base + "/external.html", "doc") in outcomes(items, "")
    assert external.paths() == ["/robots.txt", "/external.html"]  # robots.txt 404: allowed
    assert {agent for _, _, agent in external.log} == {AGENT}


# --------------------------------------------------------------------------- robots.txt status


def test_robots_5xx_disallows_the_host_after_retries():
    with serve({"/robots.txt": status(500), "/": html("<p>Hi.</p>")}) as (site,):
        items = run(config(site, retries=1, backoff_seconds=0.01))
    assert outcomes(items, site.base) == [("/", "robots_disallowed")]
    assert "unreachable after 2 tries (HTTP 500)" in items[0].message
    assert site.paths() == ["/robots.txt", "/robots.txt"]  # the page itself is never requested


def test_robots_4xx_allows_and_unreachable_host_disallows():
    with serve({"/robots.txt": status(403), "/": html("<p>Hi.</p>")}) as (site,):
        assert outcomes(run(config(site)), site.base) == [("/", "doc")]
    with serve({}) as (site,):
        dead = site.base
    items = run(CrawlConfig(start_urls=[dead + "/"], retries=1, backoff_seconds=0.01, delay_seconds=0.0,
                            timeout_seconds=2.0, user_agent=AGENT))
    assert outcomes(items, dead) == [("/", "robots_disallowed")]
    assert "connection error" in items[0].message


# --------------------------------------------------------------------------- retries and delays


def test_fetch_failed_after_retries_with_exponential_backoff():
    with serve({"/": status(500)}) as (site,):
        items = run(config(site, retries=2, backoff_seconds=0.05, delay_seconds=0.0))
    assert outcomes(items, site.base) == [("/", "fetch_failed")]
    assert items[0].message.startswith(f"{site.base}/ could not be fetched after 3 tries (HTTP 500)")
    first, second, third = site.times("/")
    assert second - first >= 0.05 and third - second >= 0.1


def test_retry_after_is_honoured_and_a_long_one_fails_fast():
    routes = {
        "/": lambda n: status(429, {"Retry-After": "0.4"})(n) if n == 0 else html('<p>Ok.</p><a href="/x">x</a>')(n),
        "/x": status(503, {"Retry-After": "3600"}),
    }
    with serve(routes) as (site,):
        items = run(config(site, retries=3, backoff_seconds=0.01, delay_seconds=0.0))
    assert outcomes(items, site.base) == [("/", "doc"), ("/x", "fetch_failed")]
    first, second = site.times("/")
    assert second - first >= 0.4
    assert site.paths().count("/x") == 1  # an hour's Retry-After: give up rather than come back early
    assert "Retry-After 3600 s" in items[1].message


def test_timeout_is_retried():
    def slow_then_fast(n: int) -> Reply:
        if n == 0:
            time.sleep(0.6)  # longer than the client's 0.2 s timeout
        return html("<p>Finally.</p>")(n)

    with serve({"/": slow_then_fast}) as (site,):
        items = run(config(site, timeout_seconds=0.2, retries=1, backoff_seconds=0.01, delay_seconds=0.0))
    assert outcomes(items, site.base) == [("/", "doc")]
    assert site.paths() == ["/robots.txt", "/", "/"]


def test_delay_seconds_applies_when_larger_than_crawl_delay():
    routes = {"/robots.txt": lambda n: (200, {}, ROBOTS),
              "/": html('<p>Home.</p><a href="/a">a</a><a href="/b">b</a>'), "/a": html("<p>A.</p>"),
              "/b": html("<p>B.</p>")}
    with serve(routes) as (site,):
        items = run(config(site, delay_seconds=0.2))
    assert len(items) == 3 and site.paths() == ["/robots.txt", "/", "/a", "/b"]
    arrivals = site.times()
    assert min(b - a for a, b in zip(arrivals, arrivals[1:])) >= 0.2


# --------------------------------------------------------------------------- pieces


def test_normalize_url():
    assert normalize_url("HTTP://Example.COM:80") == "http://example.com/"
    assert normalize_url("https://example.com:443/a b?q=é#frag") == "https://example.com/a%20b?q=%C3%A9"
    assert normalize_url("../c?x=1#y", "http://h:8080/a/b/") == "http://h:8080/a/c?x=1"
    assert normalize_url("//other.org/p", "https://h/") == "https://other.org/p"
    assert normalize_url("http://user:pw@h/%41") == "http://h/%41"
    for bad in ("mailto:a@b.c", "javascript:void(0)", "ftp://h/f", "http://[::1", "http://h:99999/", "/rel"):
        assert normalize_url(bad) is None


def test_extract_links_order_base_and_nofollow():
    page = ('<base href="/docs/"><a href="x.html">x</a><a href="#top">top</a><area href="y.html">'
            '<a href="x.html#part">again</a><a rel="ugc nofollow" href="z.html">z</a><a href="tel:1">t</a>')
    # "#top" is resolved against <base>, as browsers do.
    assert extract_links(page, "http://h/index.html") == ["http://h/docs/x.html", "http://h/docs/",
                                                          "http://h/docs/y.html"]
    assert extract_links('<meta name="robots" content="noindex, nofollow"><a href="/a">a</a>', "http://h/") == []


def test_robots_crawl_delay_groups():
    text = ("User-agent: *\nCrawl-delay: 2\n\nUser-agent: other\nUser-agent: lmforge-test\n"
            "Crawl-delay: 0.5  # ours\n\nUser-agent: x\nCrawl-delay: 9\n")
    assert RobotsRules.parse(text, AGENT).crawl_delay == 0.5
    assert RobotsRules.parse(text, "somebot/2").crawl_delay == 2.0
    assert RobotsRules.parse("User-agent: *\nCrawl-delay: soon\n", AGENT).crawl_delay == 0.0
    # Only the group that applies counts: ours has no Crawl-delay, so the * group's 2 s is not ours.
    assert RobotsRules.parse("User-agent: *\nCrawl-delay: 2\n\nUser-agent: lmforge-test\nDisallow: /x\n",
                             AGENT).crawl_delay == 0.0
    # Request-rate 1/4 (one request per 4 s) beats a Crawl-delay of 1 s.
    assert RobotsRules.parse("User-agent: *\nCrawl-delay: 1\nRequest-rate: 1/4\n", AGENT).crawl_delay == 4.0


# --------------------------------------------------------------------------- RFC 9309 rules
# Each expectation is read off the RFC's text (section numbers given), not off the parser.


def allowed(robots_txt: str, user_agent: str, *paths: str) -> list[bool]:
    """The crawler's own decision for each path on host h (normalised as the crawl does)."""
    rules = RobotsRules.parse(robots_txt, user_agent)
    return [rules.allows(normalize_url("http://h" + path)) for path in paths]


# RFC 9309 section 5.1, "Simple Example", verbatim.
RFC_EXAMPLE = """User-Agent: *
Disallow: *.gif$
Disallow: /example/
Allow: /publications/

User-Agent: foobot
Disallow:/
Allow:/example/page.html
Allow:/example/allowed.gif

User-Agent: barbot
User-Agent: bazbot
Disallow: /example/page.html

User-Agent: quxbot

EOF
"""


def test_rfc9309_simple_example_groups():
    # *: no .gif file, nothing under /example/, /publications/ allowed.
    assert allowed(RFC_EXAMPLE, "otherbot/1.0", "/publications/a.html", "/example/x.html", "/img/a.gif",
                   "/img/a.gif?size=2", "/index.html") == [True, False, False, True, True]
    # foobot: only the two allowed pages; the * group does not apply to it at all.
    assert allowed(RFC_EXAMPLE, "foobot/2.1", "/example/page.html", "/example/allowed.gif", "/",
                   "/publications/a.html", "/example/other.html") == [True, True, False, False, False]
    # barbot and bazbot share one group: only /example/page.html is off limits (gifs are fine).
    for bot in ("barbot/1", "bazbot/1"):
        assert allowed(RFC_EXAMPLE, bot, "/example/page.html", "/example/other.html", "/a.gif") == [
            False, True, True]
    # quxbot's group has no rules: everything is allowed (section 2.2.2).
    assert allowed(RFC_EXAMPLE, "quxbot/1", "/example/page.html", "/a.gif", "/example/") == [True, True, True]


def test_rfc9309_user_agent_group_selection():
    # 2.2.1: the product token is matched case-insensitively.
    assert allowed(RFC_EXAMPLE, "FooBot/9 (+http://example.com/bot)", "/example/page.html", "/") == [True, False]
    assert allowed("User-agent: LMForge-TEST\nDisallow: /x/\n", AGENT, "/x/a", "/y") == [False, True]
    # 2.2.1: several groups for the same token are combined into one (the ExampleBot example).
    combined = ("user-agent: ExampleBot\ndisallow: /foo\ndisallow: /bar\n\n"
                "user-agent: ExampleBot\ndisallow: /baz\n\nuser-agent: *\ndisallow: /qux\n")
    assert allowed(combined, "examplebot/1.1", "/foo", "/bar", "/baz", "/qux") == [False, False, False, True]
    assert allowed(combined, "otherbot/1", "/foo", "/qux") == [True, False]
    # The token is the product name only: a group for a prefix of it ("lmforge"), or for a word
    # elsewhere in our User-Agent header ("bot" in its URL), is not ours, so * applies.
    others = "User-agent: lmforge\nDisallow: /\n\nUser-agent: bot\nDisallow: /\n\nUser-agent: *\nDisallow: /p/\n"
    assert allowed(others, AGENT, "/", "/p/1") == [True, False]
    # No group for us and no * group: no rules apply.
    assert allowed("User-agent: otherbot\nDisallow: /\n", AGENT, "/", "/a") == [True, True]
    # 2.2.2: /robots.txt is implicitly allowed.
    assert allowed("User-agent: *\nDisallow: /\n", AGENT, "/robots.txt", "/") == [True, False]


def test_rfc9309_longest_match_and_allow_on_ties():
    # 5.2 "Longest Match": the longer disallow wins over the shorter allow, whatever the order.
    longest = "User-Agent: foobot\nAllow: /example/page/\nDisallow: /example/page/disallowed.gif\n"
    reordered = "User-Agent: foobot\nDisallow: /example/page/disallowed.gif\nAllow: /example/page/\n"
    for text in (longest, reordered):
        assert allowed(text, "foobot/1", "/example/page/", "/example/page/a.html",
                       "/example/page/disallowed.gif") == [True, True, False]
    # 2.2.2: the most specific (most octets) match wins, an allow or a disallow, in any order.
    nested = "User-agent: *\nAllow: /a/b/c/\nDisallow: /a/\nAllow: /\nDisallow: /a/b/\n"
    assert allowed(nested, AGENT, "/", "/a/x", "/a/b/x", "/a/b/c/x") == [True, False, False, True]
    # 2.2.2: an allow and a disallow rule that are equivalent: the allow is used.
    for text in ("User-agent: *\nDisallow: /page\nAllow: /page\n", "User-agent: *\nAllow: /page\nDisallow: /page\n"):
        assert allowed(text, AGENT, "/page", "/page/2", "/other") == [True, True, True]
    # A wildcard rule competes on length too: on /page.html "/*.html" matches more octets (the
    # whole path, 10) and is longer as written (7) than "/page" (5), so it wins either way.
    assert allowed("User-agent: *\nAllow: /page\nDisallow: /*.html\n", AGENT, "/page.html", "/page") == [
        False, True]
    # 2.2.2: matching is case sensitive.
    assert allowed("User-agent: *\nDisallow: /X/\n", AGENT, "/X/1", "/x/1") == [False, True]


def test_rfc9309_wildcards_and_end_anchor():
    # 2.2.3: "*" is 0 or more instances of any character.
    star = "User-agent: *\nDisallow: /\nAllow: /this/*/exactly\n"
    assert allowed(star, AGENT, "/this/a/exactly", "/this/a/b/exactly", "/this//exactly", "/this/exactly",
                   "/this/a/exactly/more") == [True, True, True, False, True]
    assert allowed("User-agent: *\nDisallow: /*.php\n", AGENT, "/index.php", "/a/b.php?x=1", "/php", "/a.ph") == [
        False, False, True, True]
    # 2.2.3: "$" ends the pattern: the path must end there (the query is part of the path matched).
    dollar = "User-agent: *\nDisallow: /this/\nAllow: /this/path/exactly$\n"
    assert allowed(dollar, AGENT, "/this/path/exactly", "/this/path/exactly/", "/this/path/exactly?x=1",
                   "/this/path/exactlyy") == [True, False, False, False]
    assert allowed("User-agent: *\nDisallow: /*.gif$\n", AGENT, "/a.gif", "/b/c.gif", "/a.gif?x=1",
                   "/a.gifs") == [False, False, True, True]


def test_rfc9309_percent_encoding():
    # 2.2.2's table: a UTF-8 path in the file and its percent-encoded form are the same rule,
    # and an encoded unreserved character ("%62%61%7A") matches it unencoded ("baz").
    for rule in ("/foo/bar/\u30c4", "/foo/bar/%E3%83%84"):
        assert allowed(f"User-agent: *\nDisallow: {rule}\n", AGENT, "/foo/bar/\u30c4", "/foo/bar/%E3%83%84",
                       "/foo/bar/x") == [False, False, True]
    assert allowed("User-agent: *\nDisallow: /foo/bar/%62%61%7A\n", AGENT, "/foo/bar/baz", "/foo/bar/bax") == [
        False, True]
    # 2.2.3: special characters meant verbatim are percent-encoded in the file.
    assert allowed("User-agent: *\nDisallow: /path/file-with-a-%2A.html\n", AGENT, "/path/file-with-a-*.html",
                   "/path/file-with-a-x.html") == [False, True]
    assert allowed("User-agent: *\nDisallow: /path/foo-%24\n", AGENT, "/path/foo-$", "/path/foo-") == [
        False, True]


def test_robots_rules_of_a_missing_or_unreachable_file():
    assert RobotsRules.everything(True, "robots.txt (HTTP 404)").allows("http://h/any") is True
    assert RobotsRules.everything(False, "unreachable").allows("http://h/any") is False


# Every rule kind above through a real crawl: the old first-match parser (no "*", no "$",
# substring user-agent match) fetched the wrong pages here.
RFC_ROBOTS = """User-agent: *
Disallow: /

User-agent: lmforge
Disallow: /

User-agent: LMForge-Test
Disallow: /docs/
Allow: /docs/public/
Allow: /docs/page.html$
Disallow: /*.pdf$
Disallow: /caf%C3%A9/
Allow: /same
Disallow: /same
""".encode()


def test_crawl_obeys_rfc9309_rules_end_to_end():
    links = ["/docs/secret.html", "/docs/public/a.html", "/docs/page.html", "/docs/page.html?v=2", "/report.pdf",
             "/report.pdf?download=1", "/caf\u00e9/menu.html", "/same"]
    routes = {"/robots.txt": lambda n: (200, {"Content-Type": "text/plain"}, RFC_ROBOTS),
              "/": html("<p>Home.</p>" + "".join(f'<a href="{link}">x</a>' for link in links))}
    for path in ("/docs/secret.html", "/docs/public/a.html", "/docs/page.html", "/docs/page.html?v=2",
                 "/report.pdf", "/report.pdf?download=1", "/caf%C3%A9/menu.html", "/same"):
        routes[path] = html(f"<p>{path}</p>")
    with serve(routes) as (site,):
        items = run(config(site, delay_seconds=0.0, max_depth=1))
    assert outcomes(items, site.base) == [
        ("/", "doc"),
        ("/docs/secret.html", "robots_disallowed"),  # Disallow: /docs/
        ("/docs/public/a.html", "doc"),  # the longer Allow: /docs/public/
        ("/docs/page.html", "doc"),  # Allow: /docs/page.html$ (longer than /docs/)
        ("/docs/page.html?v=2", "robots_disallowed"),  # "$" does not match: /docs/ applies
        ("/report.pdf", "robots_disallowed"),  # Disallow: /*.pdf$
        ("/report.pdf?download=1", "doc"),  # .pdf is not at the end of the path
        ("/caf%C3%A9/menu.html", "robots_disallowed"),  # percent-encoded rule, UTF-8 link
        ("/same", "doc"),  # Allow and Disallow equivalent: allow
    ]
    assert site.paths() == ["/robots.txt", "/", "/docs/public/a.html", "/docs/page.html", "/report.pdf?download=1",
                            "/same"]


def test_missing_protego_names_the_extra_before_any_request(monkeypatch):
    monkeypatch.setitem(sys.modules, "protego", None)  # "import protego" now raises ImportError
    with serve({"/": html("<p>Hi.</p>")}) as (site,):
        with pytest.raises(DataError, match=r"needs protego: pip install lmforge\[data\]"):
            crawl(config(site))
        assert site.log == []
    # A pipeline or prepare run with a crawl source fails when it lists its shards, before any work.
    from lmforge.config import SourceConfig
    from lmforge.data.sources import source_shards

    with pytest.raises(DataError, match=r"needs protego: pip install lmforge\[data\]"):
        source_shards(SourceConfig(kind="crawl", crawl=CrawlConfig(start_urls=["http://127.0.0.1/"])))


def test_bad_config_is_one_line_before_any_request():
    with pytest.raises(ConfigError, match="crawl.start_urls is empty"):
        crawl(CrawlConfig())
    with pytest.raises(ConfigError, match=r"crawl.start_urls\[1\] 'ftp://h/' is not an http\(s\) URL"):
        crawl(CrawlConfig(start_urls=["http://h/", "ftp://h/"]))
    with pytest.raises(ConfigError, match="crawl.max_pages must be at least 1, got 0"):
        crawl(CrawlConfig(start_urls=["http://h/"], max_pages=0))


def test_real_main_text_extractor():
    html_reader = pytest.importorskip("lmforge.data.readers.html")
    article = "".join(f"<p>This is sentence number {i} of a long article about crawling the web politely, "
                      f"with enough words to count as main text.</p>" for i in range(12))
    routes = {"/": html(f"<nav><a href='/empty'>x</a></nav><article><h1>Crawling</h1>{article}</article>"),
              "/empty": html("")}
    with serve(routes) as (site,):
        items = list(crawl(config(site)))
    assert html_reader.extract_main_text is not None
    assert outcomes(items, site.base) == [("/", "doc"), ("/empty", "no_main_text")]
    assert "sentence number 11 of a long article" in items[0].text


def test_charset_from_header_or_meta_and_html_sniffed_without_content_type():
    routes = {"/": lambda n: (200, {"Content-Type": "text/html; charset=iso-8859-1"},
                              b'<p>caf\xe9</p><a href="/meta">m</a><a href="/bare">b</a><a href="/plain">p</a>'),
              "/meta": lambda n: (200, {"Content-Type": "text/html"},
                                  b'<meta charset="windows-1252"><p>\x93quoted\x94</p>'),
              "/bare": lambda n: (200, {}, b"<!DOCTYPE html><p>no type</p>"),
              "/plain": lambda n: (200, {}, b"just text, no markup")}
    with serve(routes) as (site,):
        items = run(config(site, delay_seconds=0.0))
    assert [(i.id.removeprefix(site.base), i.text if isinstance(i, Document) else i.reason) for i in items] == [
        ("/", "café"), ("/meta", "\u201cquoted\u201d"), ("/bare", "no type"), ("/plain", "not_html")]


def test_crawl_as_a_source_counts_every_url():
    from lmforge.config import SourceConfig
    from lmforge.data.document import ReadStats
    from lmforge.data.sources import read_documents

    pytest.importorskip("lmforge.data.readers.html")
    article = "".join(f"<p>Paragraph {i} of a page that a crawler should keep, since it is plainly the main "
                      f"text of the page and long enough.</p>" for i in range(10))
    routes = {"/": html(f'<article>{article}</article><a href="/gone">gone</a><a href="/f.pdf">pdf</a>'),
              "/f.pdf": lambda n: (200, {"Content-Type": "application/pdf"}, b"%PDF-1.4")}
    with serve(routes) as (site,):
        stats = ReadStats()
        source = SourceConfig(kind="crawl", on_error="skip", crawl=config(site, delay_seconds=0.0))
        docs = list(read_documents(source, stats))
    assert [d.id for d in docs] == [site.base + "/"]
    assert (stats.read, stats.kept, stats.skipped) == (3, 1, {"http_error": 1, "not_html": 1})
