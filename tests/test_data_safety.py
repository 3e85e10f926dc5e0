"""The ``blocklist`` and ``pii`` data steps: what they catch, what they must leave alone."""

from __future__ import annotations

import pickle

import pytest

from lmforge.data.document import Document
from lmforge.data.safety.blocklist import Blocklist, BlocklistOptions, BlocklistStep, host_of, read_default_list
from lmforge.data.safety.pii import PiiOptions, PiiStep, luhn_valid, shannon_entropy
from lmforge.data.steps import Drop, build_step, registered_steps
from lmforge.errors import ConfigError, DataError


def doc(text: str, **meta) -> Document:
    return Document("d1", text, dict(meta))


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# ----------------------------------------------------------------------------- blocklist


def test_steps_are_registered():
    steps = registered_steps()
    assert {"blocklist", "pii", "classifier"} <= set(steps)
    assert steps["blocklist"].options_cls is BlocklistOptions


def test_default_list_drops_whole_words_in_any_case_and_width():
    step = BlocklistStep(BlocklistOptions())
    assert step(doc("What the FUCK is this?")) == Drop("blocked_words", "1 blocked word(s) >= 1")
    # NFKC folds full-width letters to ASCII before matching
    assert step(doc("ｆｕｃｋ")) == Drop("blocked_words", "1 blocked word(s) >= 1")
    # whole words only: the Scunthorpe problem
    kept = doc("Scunthorpe United played at Glanford Park; the cocktail was fine.")
    assert step(kept) is kept


def test_cheap_deobfuscation_and_what_it_leaves_alone(tmp_path):
    words = write(tmp_path, "words.txt", "ass\nshit\n")
    step = BlocklistStep(BlocklistOptions(word_files=[words], use_default=False))
    assert step(doc("oh sh1t")) == Drop("blocked_words", "1 blocked word(s) >= 1")
    assert step(doc("shiiiit happens")) == Drop("blocked_words", "1 blocked word(s) >= 1")
    assert step(doc("what a 4ss")) == Drop("blocked_words", "1 blocked word(s) >= 1")
    for text in ("we sold 455 apples", "assess the class", "sh!t", "s h i t"):  # numbers; not handled
        assert step(doc(text)).text == text
    plain = BlocklistStep(BlocklistOptions(word_files=[words], use_default=False, deobfuscate=False))
    assert plain(doc("oh sh1t")).text == "oh sh1t"


def test_user_lists_with_comments_phrases_and_hit_threshold(tmp_path):
    words = write(tmp_path, "words.txt", "# my list\nbadword\nvery bad phrase   # trailing comment\n\n")
    text = "A VERY bad phrase, then badword and Badword again."
    blocklist = Blocklist(["badword", "very bad phrase"], [])
    assert blocklist.count_words(text) == 3
    options = BlocklistOptions(word_files=[words], use_default=False, min_word_hits=3)
    assert BlocklistStep(options)(doc(text)) == Drop("blocked_words", "3 blocked word(s) >= 3")
    options.min_word_hits = 4
    assert BlocklistStep(options)(doc(text)).text == text
    options.min_word_hits = 0  # word check off
    assert BlocklistStep(options)(doc(text)).text == text


def test_domains_block_their_subdomains_in_links_and_meta_url(tmp_path):
    domains = write(tmp_path, "domains.txt", "example-bad.com\n*.evil.org\nhttps://Shady.NET/some/path\n")
    step = BlocklistStep(BlocklistOptions(domain_files=[domains], use_default=False))
    one = Drop("blocked_domain", "1 link(s) to blocked domains >= 1")
    assert step(doc("see https://sub.example-bad.com/x?y=1 now")) == one
    assert step(doc("mirror at www.evil.org/page.")) == one
    assert step(doc("ok", url="http://a.b.shady.net:8080/index.html")) == one
    assert step(doc("(https://EXAMPLE-BAD.COM.)")) == one
    for text in ("https://notexample-bad.com/ is fine", "people talk about evil.org in prose",
                 "https://example-bad.com.au/"):
        assert step(doc(text)).text == text
    assert step(doc("ok", source="http://evil.org/")).text == "ok"  # only meta[url_field] is checked
    two = BlocklistStep(BlocklistOptions(domain_files=[domains], use_default=False, min_domain_hits=2))
    assert two(doc("https://evil.org/a")).text == "https://evil.org/a"
    assert two(doc("https://evil.org/a", url="https://x.evil.org")) == Drop(
        "blocked_domain", "2 link(s) to blocked domains >= 2")
    no_meta = BlocklistStep(BlocklistOptions(domain_files=[domains], use_default=False, url_field=""))
    assert no_meta(doc("ok", url="https://evil.org")).text == "ok"


def test_default_list_domains_and_host_parsing():
    words, domains = read_default_list()
    assert "fuck" in words and "pornhub.com" in domains and len(words) < 50 and len(domains) < 50
    step = BlocklistStep(BlocklistOptions())
    assert step(doc("hello", url="https://www.pornhub.com/view")) == Drop(
        "blocked_domain", "1 link(s) to blocked domains >= 1")
    assert host_of("HTTPS://User:pw@WWW.Example.COM.:443/a") == "www.example.com"
    assert host_of("http://[zz]/") is None


def test_blocklist_mistakes_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="blocklist file '.*missing.txt' not found"):
        BlocklistStep(BlocklistOptions(word_files=[str(tmp_path / "missing.txt")]))
    empty = write(tmp_path, "empty.txt", "# nothing here\n")
    with pytest.raises(ConfigError, match="no entries"):
        BlocklistStep(BlocklistOptions(word_files=[empty], use_default=False))
    with pytest.raises(ConfigError, match="steps\\[2\\].min_word_hits"):
        build_step({"step": "blocklist", "min_word_hits": "many"}, 2)
    built = build_step({"step": "blocklist", "min_word_hits": 2, "use_default": True}, 0)
    assert isinstance(built, BlocklistStep) and built.options.min_word_hits == 2


def test_blocklist_step_pickles():
    step = pickle.loads(pickle.dumps(BlocklistStep(BlocklistOptions())))
    assert step(doc("fuck fuck")) == Drop("blocked_words", "2 blocked word(s) >= 1")


# ----------------------------------------------------------------------------- pii


@pytest.mark.parametrize("text, masked, kind", [
    ("write to john.doe+news@mail.example.co.uk today", "write to <EMAIL> today", "email"),
    ("call +1 (415) 555-0132 now", "call <PHONE> now", "phone"),
    ("call +44 20 7946 0958.", "call <PHONE>.", "phone"),
    ("call +33 1 23 45 67 89", "call <PHONE>", "phone"),
    ("call +49-30-1234567", "call <PHONE>", "phone"),
    ("office (415) 555-0132", "office <PHONE>", "phone"),
    ("office 415-555-0132 or", "office <PHONE> or", "phone"),
    ("office 415.555.0132", "office <PHONE>", "phone"),
    ("ring 020 7946 0958", "ring <PHONE>", "phone"),
    ("ring 07700 900123", "ring <PHONE>", "phone"),
    ("ring 030/1234567", "ring <PHONE>", "phone"),
    ("server 8.8.8.8.", "server <IP>.", "ip"),
    ("host 2001:4860:4860::8888 up", "host <IP> up", "ip"),
    ("card 4111 1111 1111 1111 ok", "card <CREDIT_CARD> ok", "credit_card"),
    ("card 4111-1111-1111-1111", "card <CREDIT_CARD>", "credit_card"),
    ("amex 378282246310005", "amex <CREDIT_CARD>", "credit_card"),
    ("discover 6011000990139424.", "discover <CREDIT_CARD>.", "credit_card"),
    ("aws AKIAIOSFODNN7EXAMPLE", "aws <API_KEY>", "api_key"),
    ("gh ghp_" + "a1B2c3D4e5" * 4, "gh <API_KEY>", "api_key"),
    ("gh github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "gh <API_KEY>", "api_key"),
    ("slack xoxb-123456789012-abcdefABCDEF", "slack <API_KEY>", "api_key"),
    ("openai sk-proj-Abc123Def456Ghi789Jkl012", "openai <API_KEY>", "api_key"),
    ("google AIzaSyA1234567890abcdefghijklmnopqrstuv", "google <API_KEY>", "api_key"),
    ('api_key = "a8Fk29dkLq0ZpX7mN3vB5cR1"', 'api_key = "<API_KEY>"', "api_key"),
    ("SECRET_TOKEN: Zx9Qw8Er7Ty6Ui5Op4As3Df2", "SECRET_TOKEN: <API_KEY>", "api_key"),
    ("k\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow+IBAA/KCAQ=\n-----END RSA PRIVATE KEY-----\nend",
     "k\n<API_KEY>\nend", "api_key"),
    ("cut -----BEGIN PRIVATE KEY-----\nMIIEowIBAAKCAQ\nAAAA", "cut <API_KEY>", "api_key"),
])
def test_each_kind_is_masked_exactly_and_counted(text, masked, kind):
    out = PiiStep(PiiOptions())(doc(text, source="f.txt"))
    assert out.text == masked
    assert out.meta == {"source": "f.txt", "pii": {kind: 1}}


@pytest.mark.parametrize("text", [
    "Released v1.2.3.4 and 1.2.3.4.5; 999.1.1.1 and 01.02.03.04 are not addresses.",
    "Dates 2023-01-15, 15.01.2023, 01/02/2023 and 2023/01/15; years 1999 2000 2001.",
    "ISBN 978-3-16-148410-0 and 0-306-40615-2; price $1,234,567.89 or 1 234 567,00 EUR.",
    "Order 4111111111111112 fails Luhn; so does 6011000990139425; 1234 5678 9012 3452 starts with 1.",
    "Table: 100 200 3000; id 5551234567; 555-123-4567 has exchange 123; time 12:30:45.",
    "Python a[1::2], C++ face::add, MAC 00:1A:2B:3C:4D:5E, loopback ::1.",
    "Config api_key = your-api-key-goes-here and token: ${GITHUB_TOKEN} and sk-short.",
    "Code token = tokenizer.convert_tokens_to_ids2(x); key_path = /usr/lib/python3.11/site-packages",
    "Mail me at user@localhost or @decorator; x@y is no address.",
])
def test_false_positives_are_left_untouched(text):
    original = doc(text)
    assert PiiStep(PiiOptions())(original) is original  # unchanged: no copy, no meta["pii"]


def test_bare_dotted_quad_is_masked_as_an_address():
    # documented choice: "1.2.3.4" may be a version, but it is exactly an address's shape
    assert PiiStep(PiiOptions())(doc("version 1.2.3.4")).text == "version <IP>"


def test_private_ranges_kept_or_masked_by_option():
    text = "lan 192.168.1.1, 10.0.0.7, lo 127.0.0.1, doc 192.0.2.5, link fe80::1ff:fe23:4567:890a, pub 93.184.216.34"
    kept = PiiStep(PiiOptions())(doc(text))
    assert kept.text == text.replace("93.184.216.34", "<IP>")
    assert kept.meta["pii"] == {"ip": 1}
    masked = PiiStep(PiiOptions(keep_private_ips=False))(doc(text))
    assert masked.text == "lan <IP>, <IP>, lo <IP>, doc <IP>, link <IP>, pub <IP>"
    assert masked.meta["pii"] == {"ip": 6}


def test_counts_tokens_and_switches():
    text = "a@b.org c@d.org 8.8.4.4 +1 415 555 0132 4111111111111111"
    out = PiiStep(PiiOptions())(doc(text))
    assert out.text == "<EMAIL> <EMAIL> <IP> <PHONE> <CREDIT_CARD>"
    assert out.meta["pii"] == {"email": 2, "ip": 1, "phone": 1, "credit_card": 1}
    custom = PiiStep(PiiOptions(emails=False, ips=False, phone_token="[tel]", credit_card_token="[cc]"))
    out = custom(doc(text))
    assert out.text == "a@b.org c@d.org 8.8.4.4 [tel] [cc]"
    assert out.meta["pii"] == {"phone": 1, "credit_card": 1}


def test_luhn_and_entropy_by_hand():
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == 2.0


def test_pii_from_yaml_and_pickle():
    step = build_step({"step": "pii", "emails": False, "ip_token": "[ip]"}, 0)
    step = pickle.loads(pickle.dumps(step))
    out = step(doc("x@y.com 8.8.8.8"))
    assert out.text == "x@y.com [ip]" and out.meta == {"pii": {"ip": 1}}
    with pytest.raises(ConfigError, match="steps\\[0\\].emails"):
        build_step({"step": "pii", "emails": "no"}, 0)
