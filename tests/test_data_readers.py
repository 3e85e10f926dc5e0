"""Format readers (lmforge.data.readers) and the shard API of lmforge.data.sources.

Every fixture is built in the test: Gutenberg books, .zst JSONL, CSV, HTML pages, WARC
archives (warcio's writer), MediaWiki dumps, PDFs written by hand, EPUBs (ebooklib's writer).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import sys
import types

import pytest

from helpers import read_source as read, write_file as write

from lmforge.config import CrawlConfig, SourceConfig
from lmforge.data import Document, ReadStats, read_documents
from lmforge.data.document import BadDocument
from lmforge.data.readers.html import extract_main_text, visible_text
from lmforge.data.readers.wikitext import wikitext_to_text
from lmforge.data.sources import read_shard, source_shards
from lmforge.errors import DataError


# --------------------------------------------------------------------------- text: Markdown, Gutenberg

GUTENBERG_BOOK = """\ufeffThe Project Gutenberg eBook of A Short Tale

This ebook is for the use of anyone anywhere in the United States and
most other parts of the world at no cost and with almost no restrictions.

Title: A Short Tale

Author: Jane Quill

Language: English

*** START OF THE PROJECT GUTENBERG EBOOK A SHORT TALE ***




CHAPTER I

Once upon a time there was a short tale.

*** END OF THE PROJECT GUTENBERG EBOOK A SHORT TALE ***

Updated editions will replace the previous one--the old editions will
be renamed.
"""


def test_gutenberg_header_and_footer_are_stripped(tmp_path):
    book = write(tmp_path / "book.txt", GUTENBERG_BOOK)
    notes = write(tmp_path / "notes.md", "# Notes\n\nA *Markdown* file.\n")
    docs, _ = read(SourceConfig(kind="text", paths=[str(tmp_path)]))
    assert [d.text for d in docs] == ["CHAPTER I\n\nOnce upon a time there was a short tale.",
                                      "# Notes\n\nA *Markdown* file.\n"]
    assert docs[0].meta == {"source": book, "gutenberg": True, "title": "A Short Tale",
                            "author": "Jane Quill", "language": "English"}
    assert docs[1].meta == {"source": notes}


def test_gutenberg_old_marker_without_footer(tmp_path):
    old = ("Some licence text\n*** START OF THIS PROJECT GUTENBERG EBOOK MOBY DICK ***\n"
           "Call me Ishmael.\n")
    docs, _ = read(SourceConfig(kind="text", paths=[write(tmp_path / "old.txt", old)]))
    assert docs[0].text == "Call me Ishmael."
    assert docs[0].meta["title"] == "MOBY DICK"
    mention = "I read it on PROJECT GUTENBERG yesterday.\n"  # no markers: left alone
    docs, _ = read(SourceConfig(kind="text", paths=[write(tmp_path / "m.txt", mention)]))
    assert docs[0].text == mention and docs[0].meta == {"source": str(tmp_path / "m.txt")}


# --------------------------------------------------------------------------- jsonl .zst


def zst(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def test_jsonl_zst_streams_multiple_frames(tmp_path):
    first = b"".join(json.dumps({"text": f"doc {i}"}).encode() + b"\n" for i in range(3))
    second = json.dumps({"text": "from the second frame"}).encode() + b"\n"
    path = write(tmp_path / "a.jsonl.zst", zst(first) + zst(second))
    docs, stats = read(SourceConfig(kind="jsonl", paths=[str(tmp_path)]))
    assert [(d.id, d.text) for d in docs] == [(f"{path}:1", "doc 0"), (f"{path}:2", "doc 1"),
                                              (f"{path}:3", "doc 2"), (f"{path}:4", "from the second frame")]
    assert docs[3].meta == {"source": path, "line": 4}
    assert stats.skipped == {}


def test_truncated_zst_keeps_documents_before_the_cut(tmp_path):
    # zstd decodes whole blocks (up to 128 KiB), so the file must span several of them
    lines = [json.dumps({"text": f"document {i} " + os.urandom(40).hex()}) + "\n" for i in range(10_000)]
    blob = zst("".join(lines).encode())
    path = write(tmp_path / "cut.jsonl.zst", blob[: len(blob) // 2])
    docs, stats = read(SourceConfig(kind="jsonl", paths=[path], on_error="skip"))
    assert 0 < len(docs) < 10_000
    assert [d.text for d in docs] == [json.loads(line)["text"] for line in lines[: len(docs)]]
    assert stats.skipped == {"truncated_zst": 1}
    assert stats.skipped_examples == [(f"{path}:{len(docs) + 1}", "truncated_zst")]
    with pytest.raises(DataError, match=r"cut.jsonl.zst is a truncated zst file \(it ends after line \d+\)"):
        read(SourceConfig(kind="jsonl", paths=[path]))
    garbage = write(tmp_path / "junk.jsonl.zst", b"\x28\xb5\x2f\xfd" + b"\xff" * 50)
    _, stats = read(SourceConfig(kind="jsonl", paths=[garbage], on_error="skip"))
    assert stats.skipped == {"bad_zst": 1}


# --------------------------------------------------------------------------- csv


def test_csv_rows_columns_and_bad_rows(tmp_path):
    big = "word " * 100_000  # 500 kB: far over the csv module's default 128 kB field limit
    rows = (b'id,body\n1,"first, with a comma"\n2,"multi\nline"\n\n3\n4,caf\xe9\n'
            + f'5,"{big}"\n'.encode())
    path = write(tmp_path / "t.csv", rows)
    docs, stats = read(SourceConfig(kind="csv", paths=[path], text_field="body", on_error="skip"))
    assert [d.text for d in docs] == ["first, with a comma", "multi\nline", big]
    assert [d.id for d in docs] == [f"{path}:0", f"{path}:1", f"{path}:5"]
    assert docs[0].meta == {"source": path, "row": 0}
    assert stats.skipped == {"missing_field": 1, "not_utf8": 1}
    assert stats.skipped_examples == [(f"{path}:3", "missing_field"), (f"{path}:4", "not_utf8")]
    tsv = write(tmp_path / "t.tsv", "text\tlabel\nhello, world\t1\n")
    docs, _ = read(SourceConfig(kind="csv", paths=[tsv]))
    assert [d.text for d in docs] == ["hello, world"]


def test_csv_missing_column_is_one_error(tmp_path):
    path = write(tmp_path / "t.csv", "id,body\n1,a\n2,b\n")
    with pytest.raises(DataError, match=r"t.csv has no column 'text' \(found: id, body\): "
                                        r"pass --source.text_field NAME"):
        read(SourceConfig(kind="csv", paths=[path]))
    docs, stats = read(SourceConfig(kind="csv", paths=[path], on_error="skip"))
    assert docs == [] and stats.read == 1 and stats.skipped == {"missing_field": 1}
    header_only = write(tmp_path / "h.csv", "text\n")
    _, stats = read(SourceConfig(kind="csv", paths=[header_only], on_error="skip"))
    assert stats.skipped_examples == [(header_only, "empty")]


# --------------------------------------------------------------------------- html

ARTICLE = ("<html><head><title>Foxes</title></head><body>"
           "<nav><a href='/'>Home</a> | <a href='/about'>About us</a></nav>"
           "<article><h1>On foxes</h1><p>" + "The quick brown fox jumps over the lazy dog. " * 8 + "</p>"
           "<p>Foxes are small omnivores found on every continent except Antarctica.</p></article>"
           "<footer>Copyright 2024 Example Corp, all rights reserved</footer></body></html>")


# The article's main text: its heading and two paragraphs, one per line; no nav, no footer.
ARTICLE_TEXT = ("On foxes\n" + ("The quick brown fox jumps over the lazy dog. " * 8).strip() + "\n"
                "Foxes are small omnivores found on every continent except Antarctica.")


def test_extract_main_text_drops_boilerplate():
    text = extract_main_text(ARTICLE, url="https://example.com/foxes")
    assert text == ARTICLE_TEXT
    assert extract_main_text(ARTICLE.encode("utf-8")) == ARTICLE_TEXT
    assert extract_main_text("<html><head><title>No body</title></head></html>") is None
    assert extract_main_text(b"") is None and extract_main_text(b"\x89PNG\x00\x01") is None


def test_visible_text_keeps_everything_in_blocks():
    page = ("<?xml version='1.0' encoding='utf-8'?><html><head><title>t</title><style>p{}</style></head>"
            "<body><h1>Chapter 1</h1><p>It was a <i>dark</i> and\n   stormy night.</p><script>x()</script>"
            "<p>Short.</p></body></html>")
    assert visible_text(page) == "Chapter 1\n\nIt was a dark and stormy night.\n\nShort."
    assert visible_text(page.encode()) == visible_text(page)
    assert visible_text("") == ""


def test_html_files(tmp_path):
    good = write(tmp_path / "a.html", ARTICLE)
    write(tmp_path / "b.htm", "<html><head><title>only a head</title></head></html>")
    write(tmp_path / "c.txt", "not html, not read")
    docs, stats = read(SourceConfig(kind="html", paths=[str(tmp_path)], on_error="skip"))
    assert [d.id for d in docs] == [good] and docs[0].text == ARTICLE_TEXT
    assert docs[0].meta == {"source": good}
    assert stats.skipped_examples == [(str(tmp_path / "b.htm"), "no_main_text")]
    with pytest.raises(DataError, match=r"b.htm has no extractable main text"):
        read(SourceConfig(kind="html", paths=[str(tmp_path)]))


# --------------------------------------------------------------------------- warc


def warc_bytes(records: list[tuple], gz: bool) -> bytes:
    """records: (type, url, content_type or None, status, body); type 'warcinfo' takes no url."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    out = io.BytesIO()
    writer = WARCWriter(out, gzip=gz)
    for rec_type, url, content_type, status, body in records:
        if rec_type == "warcinfo":
            writer.write_record(writer.create_warcinfo_record("crawl.warc", {"software": "test"}))
            continue
        headers = [("Content-Type", content_type)] if content_type else []
        http = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(url, rec_type, payload=io.BytesIO(body), http_headers=http))
    return out.getvalue()


WARC_RECORDS = [
    ("warcinfo", None, None, None, None),
    ("request", "https://example.com/foxes", None, "GET / HTTP/1.1", b""),
    ("response", "https://example.com/foxes", "text/html; charset=utf-8", "200 OK", ARTICLE.encode()),
    ("response", "https://example.com/logo.png", "image/png", "200 OK", b"\x89PNG\r\n\x1a\n\x00\x00"),
    ("response", "https://example.com/empty", "text/html", "200 OK", b""),
    ("response", "https://example.com/headonly", "text/html", "200 OK", b"<html><head><title>x</title></head></html>"),
    ("response", "https://example.com/gone", "text/html", "404 Not Found",
     b"<html><body><p>Not found</p></body></html>"),
    ("response", "https://example.com/foxes2", None, "200 OK", ARTICLE.replace("On foxes", "More foxes").encode()),
]


@pytest.mark.parametrize("gz", [True, False])
def test_warc_records(tmp_path, gz):
    path = write(tmp_path / ("crawl.warc.gz" if gz else "crawl.warc"), warc_bytes(WARC_RECORDS, gz))
    docs, stats = read(SourceConfig(kind="warc", paths=[path], on_error="skip"))
    assert [d.meta["url"] for d in docs] == ["https://example.com/foxes", "https://example.com/foxes2"]
    assert docs[0].text == ARTICLE_TEXT
    assert docs[1].text == ARTICLE_TEXT.replace("On foxes", "More foxes")
    meta = docs[0].meta
    assert meta["source"] == path and meta["warc_record_id"].startswith("<urn:uuid:")
    assert meta["date"].startswith("20") and docs[0].id.startswith(f"{path}:")
    assert stats.read == 6  # six responses; warcinfo and request records are not documents
    assert stats.skipped == {"not_html": 1, "no_payload": 1, "no_main_text": 1, "http_status": 1}
    assert [r for _, r in stats.skipped_examples] == ["not_html", "no_payload", "no_main_text", "http_status"]
    offsets = [int(d.id.rsplit(":", 1)[1]) for d in docs]
    assert offsets == sorted(offsets) and offsets[0] > 0


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_warc_keeps_earlier_records(tmp_path, gz):
    pages = [("response", f"https://example.com/{i}", "text/html", "200 OK",
              ARTICLE.replace("On foxes", f"Fox number {i}").encode()) for i in range(6)]
    data = warc_bytes(pages, gz)
    for cut in (0.4, 0.6, 0.95):  # inside a record (six of about equal size)
        path = write(tmp_path / f"cut{int(cut * 100)}.warc{'.gz' if gz else ''}", data[: int(len(data) * cut)])
        docs, stats = read(SourceConfig(kind="warc", paths=[path], on_error="skip"))
        assert [d.meta["url"] for d in docs] == [f"https://example.com/{i}" for i in range(len(docs))]
        assert 1 <= len(docs) < 6 and stats.skipped == {"truncated_warc": 1}
        with pytest.raises(DataError, match=r"is a truncated WARC archive \(it ends inside the record at byte"):
            read(SourceConfig(kind="warc", paths=[path]))


# --------------------------------------------------------------------------- wikipedia

WIKITEXT = """{{Short description|Small wild canid}}
{{Infobox animal
| name = Fox
| image = {{nested|Fox.jpg}}
}}
The '''red fox''' (''Vulpes vulpes'') is a [[carnivora|carnivoran]] of the [[Canidae]] family.<ref name="a">{{cite
 book|title=Foxes}}</ref>
It lives in [[Europe]]s<ref>Smith 2001.</ref> and Asia.<!-- a hidden comment -->
[[File:Fox.jpg|thumb|A fox in [[Finland]] at [[dusk|night]]]]

== Habitat ==
{| class="wikitable"
|-
! Region !! Count
|-
| {{flag|Europe}} || 1000
|}
Foxes prefer [https://example.org/forest mixed forest] and edges [https://example.org/x].&nbsp;See also
* [[Wolf]]
* ''[[Dog]]''
__NOTOC__
=== Diet ===
Mostly <small>small</small> rodents.<ref name="b" />

[[Category:Canids]]
[[Category:Animals]]"""

WIKITEXT_PLAIN = """The red fox (Vulpes vulpes) is a carnivoran of the Canidae family.
It lives in Europes and Asia.

Habitat

Foxes prefer mixed forest and edges . See also
Wolf
Dog

Diet
Mostly small rodents."""


def test_wikitext_reduced_to_plain_text():
    assert wikitext_to_text(WIKITEXT) == WIKITEXT_PLAIN


@pytest.mark.parametrize("wikitext, plain", [
    ("a {{b {{c}} d}} e", "a  e"),
    ("keep {{ never closed", "keep {{ never closed"),
    ("x }} y", "x }} y"),
    ("{|\n|a\n{|\n|nested\n|}\n|}\nafter", "after"),
    ("[[:Category:Foxes]] and [[Image:x.png]] gone", "Category:Foxes and  gone"),
    ("==Heading==\ntext", "Heading\ntext"),
    ("'''''both''''' and l'amour", "both and l'amour"),
])
def test_wikitext_edge_cases(wikitext, plain):
    assert wikitext_to_text(wikitext) == plain


def wiki_dump(pages: list[tuple[str, int, int, str | None, bool]]) -> bytes:
    """pages: (title, ns, id, wikitext, is_redirect), in a MediaWiki export-0.11 dump."""
    from xml.sax.saxutils import escape

    body = []
    for title, ns, page_id, text, redirect in pages:
        body.append(f"<page><title>{escape(title)}</title><ns>{ns}</ns><id>{page_id}</id>"
                    + (f'<redirect title="{escape(title)}x" />' if redirect else "")
                    + f"<revision><id>{page_id}0</id><text xml:space=\"preserve\">{escape(text or '')}</text>"
                    + "</revision></page>\n")
    return ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11">\n'
            '<siteinfo><sitename>Wikipedia</sitename></siteinfo>\n' + "".join(body) + "</mediawiki>\n").encode()


DUMP_PAGES = [
    ("Red fox", 0, 12, WIKITEXT, False),
    ("Talk:Red fox", 1, 13, "Is this right?", False),
    ("Reynard", 0, 14, "#REDIRECT [[Red fox]]", True),
    ("Old redirect", 0, 15, "#redirect [[Red fox]]", False),
    ("Wolf", 0, 16, "The '''wolf''' howls.", False),
    ("Stub", 0, 17, "{{stub}}", False),
]


@pytest.mark.parametrize("suffix, compress", [(".xml", bytes), (".xml.bz2", bz2.compress),
                                              (".xml.gz", gzip.compress)])
def test_wikipedia_dump(tmp_path, suffix, compress):
    path = write(tmp_path / f"wiki{suffix}", compress(wiki_dump(DUMP_PAGES)))
    docs, stats = read(SourceConfig(kind="wikipedia", paths=[path], on_error="skip"))
    assert [(d.id, d.text) for d in docs] == [(f"{path}:12", WIKITEXT_PLAIN), (f"{path}:16", "The wolf howls.")]
    assert docs[0].meta == {"source": path, "title": "Red fox", "page_id": "12"}
    assert stats.skipped == {"not_article": 1, "redirect": 2, "empty": 1}
    assert stats.skipped_examples == [(f"{path}:13", "not_article"), (f"{path}:14", "redirect"),
                                      (f"{path}:15", "redirect"), (f"{path}:17", "empty")]


def test_wikipedia_truncated_dump_keeps_earlier_pages(tmp_path):
    pages = [(f"Page {i}", 0, i, f"Text of page {i} " + os.urandom(300).hex(), False) for i in range(1, 301)]
    dump = wiki_dump(pages)
    blob = bz2.compress(dump, compresslevel=1)  # 100 kB blocks: the cut leaves whole blocks before it
    cut = write(tmp_path / "cut.xml.bz2", blob[: len(blob) * 2 // 3])
    docs, stats = read(SourceConfig(kind="wikipedia", paths=[cut], on_error="skip"))
    assert 0 < len(docs) < 300 and [d.meta["title"] for d in docs] == [f"Page {i}" for i in range(1, len(docs) + 1)]
    assert stats.skipped == {"truncated_bz2": 1}
    plain = write(tmp_path / "cut.xml", dump[: len(dump) // 2])
    docs, stats = read(SourceConfig(kind="wikipedia", paths=[plain], on_error="skip"))
    assert 0 < len(docs) < 300 and stats.skipped == {"bad_xml": 1}
    with pytest.raises(DataError, match=r"cut.xml is not valid MediaWiki XML at line \d+"):
        read(SourceConfig(kind="wikipedia", paths=[plain]))


def test_wikipedia_memory_stays_flat(tmp_path):
    import tracemalloc

    page_text = "word " * 2000  # 10 kB a page
    path = write(tmp_path / "big.xml", wiki_dump([(f"P{i}", 0, i, page_text, False) for i in range(1, 2001)]))
    tracemalloc.start()
    try:
        num_docs = sum(1 for _ in read_documents(SourceConfig(kind="wikipedia", paths=[path]), ReadStats()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert num_docs == 2000
    assert peak < 2_000_000  # a 20 MB dump read with well under 10% of its size live


# --------------------------------------------------------------------------- pdf


def make_pdf(pages: list[str | None], title: str | None = None) -> bytes:
    """A minimal valid PDF written by hand: one page per entry showing its text (None: no text)."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        content = f"BT /F1 12 Tf 72 700 Td ({text}) Tj ET" if text is not None else ""
        objects.append(f"<< /Length {len(content)} >>\nstream\n{content}\nendstream")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {len(objects)} 0 R "
                       f"/Resources << /Font << /F1 3 0 R >> >> >>")
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    info = ""
    if title:
        objects.append(f"<< /Title ({title}) >>")
        info = f" /Info {len(objects)} 0 R"
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def test_pdf_text_layer_encrypted_and_scans(tmp_path):
    pypdf = pytest.importorskip("pypdf")
    good = write(tmp_path / "a.pdf", make_pdf(["Hello PDF world", None, "Second page text"], title="My Title"))
    write(tmp_path / "b_scan.pdf", make_pdf([None, None]))
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(good))
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    with open(tmp_path / "c_locked.pdf", "wb") as f:
        writer.write(f)
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(good))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")  # opens without a password
    with open(tmp_path / "d_owner_only.pdf", "wb") as f:
        writer.write(f)
    write(tmp_path / "e_junk.pdf", b"%PDF-1.4 this is not a pdf")
    docs, stats = read(SourceConfig(kind="pdf", paths=[str(tmp_path)], on_error="skip"))
    assert [(os.path.basename(d.id), d.text) for d in docs] == [
        ("a.pdf", "Hello PDF world\n\nSecond page text"), ("d_owner_only.pdf", "Hello PDF world\n\nSecond page text")]
    assert docs[0].meta == {"source": good, "pages": 3, "title": "My Title"}
    assert [(os.path.basename(i), r) for i, r in stats.skipped_examples] == [
        ("b_scan.pdf", "no_text_layer"), ("c_locked.pdf", "encrypted"), ("e_junk.pdf", "bad_pdf")]
    with pytest.raises(DataError, match=r"b_scan.pdf has no text layer"):
        read(SourceConfig(kind="pdf", paths=[str(tmp_path)]))


# --------------------------------------------------------------------------- epub


def test_epub_chapters_in_spine_order(tmp_path):
    epub = pytest.importorskip("ebooklib.epub")
    book = epub.EpubBook()
    book.set_identifier("tiny-1")
    book.set_title("A Tiny Book")
    book.set_language("en")
    book.add_author("Ada Writer")
    one = epub.EpubHtml(title="One", file_name="one.xhtml", lang="en")
    one.content = "<h1>Chapter One</h1><p>First   chapter\ntext.</p>"
    two = epub.EpubHtml(title="Two", file_name="two.xhtml", lang="en")
    two.content = "<h1>Chapter Two</h1><p>Second chapter.</p>"
    for item in (one, two, epub.EpubNcx(), epub.EpubNav()):
        book.add_item(item)
    book.toc = (one, two)
    book.spine = ["nav", two, one]  # reading order differs from the order items were added
    path = str(tmp_path / "tiny.epub")
    epub.write_epub(path, book)
    write(tmp_path / "broken.epub", b"PK\x03\x04 not really a zip")
    docs, stats = read(SourceConfig(kind="epub", paths=[str(tmp_path)], on_error="skip"))
    assert [d.text for d in docs] == ["Chapter Two\n\nSecond chapter.\n\nChapter One\n\nFirst chapter text."]
    assert docs[0].meta == {"source": path, "chapters": 2, "title": "A Tiny Book", "author": "Ada Writer"}
    assert stats.skipped_examples == [(str(tmp_path / "broken.epub"), "bad_epub")]


# --------------------------------------------------------------------------- shard API


def test_source_shards_are_sorted_files_per_kind(tmp_path):
    write(tmp_path / "b.jsonl", '{"text": "b"}\n')
    write(tmp_path / "a.jsonl.zst", zst(b'{"text": "a"}\n'))
    write(tmp_path / "c.csv", "text\nc\n")
    write(tmp_path / "sub" / "d.html", ARTICLE)
    root = str(tmp_path)
    assert source_shards(SourceConfig(kind="jsonl", paths=[root])) == [f"{root}/a.jsonl.zst", f"{root}/b.jsonl"]
    assert source_shards(SourceConfig(kind="csv", paths=[root])) == [f"{root}/c.csv"]
    assert source_shards(SourceConfig(kind="html", paths=[root])) == [f"{root}/sub/d.html"]
    assert source_shards(SourceConfig(kind="crawl")) == ["crawl"]
    stdlib = source_shards(SourceConfig(kind="stdlib"))
    assert len(stdlib) > 300 and stdlib == sorted(stdlib)
    with pytest.raises(DataError, match="does not exist"):
        source_shards(SourceConfig(kind="pdf", paths=[str(tmp_path / "missing")]))


def test_read_documents_is_read_shard_over_source_shards(tmp_path):
    for name in ("a", "b", "c"):
        write(tmp_path / f"{name}.jsonl", f'{{"text": "{name}1"}}\n{{"text": "{name}2"}}\nnot json\n')
    write(tmp_path / "d.jsonl", "\n\n")  # no documents at all: counted as empty
    cfg = SourceConfig(kind="jsonl", paths=[str(tmp_path)], on_error="skip")
    per_shard = []
    total = ReadStats()
    for shard in source_shards(cfg):
        stats = ReadStats()
        per_shard.append([d.text for d in read_shard(cfg, shard, stats)])
        assert stats.read == stats.kept + stats.num_skipped
        total.read, total.kept = total.read + stats.read, total.kept + stats.kept
    assert per_shard == [["a1", "a2"], ["b1", "b2"], ["c1", "c2"], []]
    docs, stats = read(cfg)
    assert [d.text for d in docs] == [t for shard in per_shard for t in shard]
    assert (stats.read, stats.kept) == (total.read, total.kept) == (10, 6)
    assert stats.skipped == {"bad_json": 3, "empty": 1}
    assert stats.skipped_examples[-1] == (str(tmp_path / "d.jsonl"), "empty")


def test_crawl_kind_delegates_to_the_crawler(monkeypatch):
    seen = []

    def fake_crawl(cfg: CrawlConfig):
        seen.append(cfg.start_urls)
        yield Document("https://example.com/", "crawled page", {"source": "https://example.com/"})
        yield BadDocument("https://example.com/robots", "robots_disallowed", "https://example.com/robots is disallowed")

    monkeypatch.setitem(sys.modules, "lmforge.data.crawl", types.SimpleNamespace(crawl=fake_crawl))
    cfg = SourceConfig(kind="crawl", on_error="skip", crawl=CrawlConfig(start_urls=["https://example.com/"]))
    docs, stats = read(cfg)
    assert [d.text for d in docs] == ["crawled page"] and seen == [["https://example.com/"]]
    assert stats.skipped == {"robots_disallowed": 1}


def test_warc_resource_records_use_their_warc_content_type(tmp_path):
    from warcio.warcwriter import WARCWriter

    out = io.BytesIO()
    writer = WARCWriter(out, gzip=False)
    for url, content_type, body in [("file:///a.html", "text/html", ARTICLE.encode()),
                                    ("file:///b.txt", "text/plain", b"plain notes")]:
        writer.write_record(writer.create_warc_record(url, "resource", payload=io.BytesIO(body),
                                                      warc_content_type=content_type))
    path = write(tmp_path / "local.warc", out.getvalue())
    docs, stats = read(SourceConfig(kind="warc", paths=[path], on_error="skip"))
    assert [(d.meta["url"], d.text) for d in docs] == [("file:///a.html", ARTICLE_TEXT)]
    assert stats.skipped == {"not_html": 1}
