"""Quality filters: each rule at, over and under its threshold, with hand-computed values.

Documents are built in the test so that one rule is the one under test: either every other
rule passes by construction, or the other rules are switched off through the options (which
also tests that options reach the thresholds).
"""

from __future__ import annotations

import pickle
import random
from collections import Counter
from dataclasses import fields

import pytest

from lmforge.data.document import Document
from lmforge.data.filters.c4 import C4Filter, C4Options, count_sentences
from lmforge.data.filters.fineweb import FineWebQuality, FineWebQualityOptions
from lmforge.data.filters.gopher import (GopherQuality, GopherQualityOptions, GopherRepetition,
                                         GopherRepetitionOptions, dup_ngram_char_frac, top_ngram_char_frac)
from lmforge.data.filters.heuristics import Heuristics, HeuristicsOptions, Length, LengthOptions
from lmforge.data.filters.words import (TextStats, ends_with_terminal_punctuation, ngrams, repeated_count_and_chars,
                                        repeated_ngrams, split_lines, split_paragraphs, split_tokens, split_words,
                                        text_stats)
from lmforge.data.steps import Drop, build_step
from lmforge.errors import ConfigError

CLEAN_ENGLISH = (
    "The history of the river town is closely tied to the water that runs through it. In the early "
    "years, farmers brought their grain to the mill by boat, and the market grew around the old stone "
    "bridge. Most of the houses that stand today were built with timber from the nearby forest.\n"
    "\n"
    "Over the following century, the railway replaced the boats, and the mill was turned into a small "
    "museum. Visitors can still see the original wheel and learn how the miller and his family lived. "
    "The local council has restored the bridge twice, most recently after the flood of 1998. "
    "Today the town is known for its summer festival, which brings music and food to the riverside.\n"
)


def run(step, text: str):
    """Run a step on a document holding ``text``: the Drop, or the kept document's text."""
    result = step(Document("doc", text))
    return result if isinstance(result, Drop) else result.text


def only(options_cls, **values):
    """Options with every nullable rule off except the ones given."""
    off = {f.name: None for f in fields(options_cls) if "Optional" in str(f.type)}
    return options_cls(**{**off, **values})


def words_text(num_words: int, cycle=("the", "river", "and", "stone")) -> str:
    """``num_words`` words from ``cycle`` (lengths 3, 5, 3, 5: mean 4 for multiples of 2)."""
    return " ".join(cycle[i % len(cycle)] for i in range(num_words))


# ------------------------------------------------------------------------------- words


def test_word_splitter_on_tricky_strings():
    assert split_words("Don't stop... it's 3.14, e-mail_me #tag") == \
        ["Don", "t", "stop", "it", "s", "3", "14", "e", "mail_me", "tag"]
    assert split_tokens("a, b... c!? #x") == ["a", ",", "b", "...", "c", "!?", "#", "x"]
    assert split_words("Grüße aus Köln — naïve café, Москва и Ελλάδα") == \
        ["Grüße", "aus", "Köln", "naïve", "café", "Москва", "и", "Ελλάδα"]
    assert split_words("東京は大きい。OK") == ["東京は大きい", "OK"]  # no spaces: one run per script run
    assert split_words("http://example.com/a?b=1") == ["http", "example", "com", "a", "b", "1"]
    assert split_words("  \n\t ") == [] and split_tokens("") == []


def test_lines_paragraphs_and_punctuation():
    assert split_lines("  a \n\n b\r\n\t\n") == ["a", "b"]
    assert split_paragraphs("p1 l1\np1 l2\n\n\np2\n \t\nP3\n") == ["p1 l1\np1 l2", "p2", "P3"]
    assert ends_with_terminal_punctuation('He said "yes."')
    assert ends_with_terminal_punctuation("(see above.)") and ends_with_terminal_punctuation("終わり。")
    assert not ends_with_terminal_punctuation("Menu") and not ends_with_terminal_punctuation("a, b,")


def test_ngrams_and_repeats():
    assert ngrams(["a", "b", "c"], 2) == [("a", "b"), ("b", "c")]
    assert ngrams(["a"], 2) == []
    # a x2 more, bb x1 more: 3 repeats holding 2*1 + 1*2 = 4 characters
    assert repeated_count_and_chars(["a", "bb", "a", "bb", "a", "c"]) == (3, 4)
    assert repeated_count_and_chars(["a", "b"]) == (0, 0)
    found = repeated_ngrams("a b c a b c a b d".split(), 6)
    assert found[2][0] == [0, 1, 2, 3, 4, 5, 6]  # ab x3, bc x2, ca x2; bd once
    assert found[3][0] == [0, 1, 2, 3, 4, 5]  # abc, bca, cab twice; abd once
    assert found[4][0] == [0, 1, 3, 4]  # abca, bcab twice
    assert found[5][0] == [0, 3]  # abcab twice
    assert found[6][0] == []


def test_repeated_ngrams_match_brute_force():
    rng = random.Random(0)
    for _ in range(20):
        words = rng.choices("a b c d".split(), k=rng.randint(0, 40))
        found = repeated_ngrams(words, 10)
        for n in range(2, 11):
            grams = ngrams(words, n)
            counts = Counter(grams)
            assert found[n][0] == [i for i, g in enumerate(grams) if counts[g] > 1]
            assert all(found[n][1][g] == counts[g] for g in found[n][1])


def test_text_stats_is_shared_for_the_same_string_only():
    text = "one two"
    first = text_stats(text)
    assert text_stats(text) is first
    assert text_stats("one two three") is not first
    assert first.word_char_prefix == [0, 3, 6] and first.num_word_chars == 6


# ------------------------------------------------------------------------------ gopher quality


def test_gopher_quality_word_count_bounds():
    step = GopherQuality(GopherQualityOptions())
    assert run(step, words_text(50)) == words_text(50)  # exactly 50: kept
    assert run(step, words_text(49)) == Drop("too_few_words", "49 words < 50")
    # symbols are not words: 49 words and 30 symbol runs are still 49 words
    assert run(step, words_text(49) + " ." * 30).reason == "too_few_words"
    assert run(GopherQuality(GopherQualityOptions(min_words=10)), words_text(49)) == words_text(49)
    bounded = GopherQuality(GopherQualityOptions(max_words=60))
    assert run(bounded, words_text(60)) == words_text(60)
    assert run(bounded, words_text(61)) == Drop("too_many_words", "61 words > 60")


def test_gopher_quality_mean_word_length():
    step = GopherQuality(GopherQualityOptions())
    three = words_text(50, ("the", "and", "cat", "dog"))  # mean exactly 3.0: kept
    assert run(step, three) == three
    shorter = three.replace("cat", "at", 1)  # 149 / 50 = 2.98
    assert run(step, shorter) == Drop("mean_word_length_low", "mean word length 2.980 < 3.0")
    # 2 stop words (3 + 3) + 46 words of 10 + 2 of 17 characters = 500 / 50 = 10.0: kept
    ten = " ".join(["the", "and"] + ["abcdefghij"] * 46 + ["abcdefghijklmnopq"] * 2)
    assert run(step, ten) == ten
    assert run(step, ten + "x") == Drop("mean_word_length_high", "mean word length 10.020 > 10.0")


def test_gopher_quality_hash_and_ellipsis_ratios():
    step = GopherQuality(GopherQualityOptions())
    words = words_text(50).split()
    five_hashes = " ".join("#" + w if i < 5 else w for i, w in enumerate(words))  # 5 / 50 = 0.1
    assert run(step, five_hashes) == five_hashes
    six_hashes = " ".join("#" + w if i < 6 else w for i, w in enumerate(words))
    assert run(step, six_hashes) == Drop("hash_ratio", "'#' per word 0.120 > 0.1")
    six_ellipses = " ".join(w + ("..." if i < 3 else "…" if i < 6 else "") for i, w in enumerate(words))
    assert run(step, six_ellipses) == Drop("ellipsis_ratio", "ellipses per word 0.120 > 0.1")
    assert run(GopherQuality(GopherQualityOptions(max_ellipsis_ratio=0.12)), six_ellipses) == six_ellipses


def test_gopher_quality_bullet_and_ellipsis_lines():
    step = GopherQuality(GopherQualityOptions())
    line = "the river and stone the river and"  # 7 words
    nine_of_ten = "\n".join(["- " + line] * 5 + ["• " + line] * 2 + ["* " + line] * 2 + [line])
    assert run(step, nine_of_ten) == nine_of_ten  # 0.9 is allowed
    all_bullets = "\n".join(["- " + line] * 10)
    assert run(step, all_bullets) == Drop("bullet_lines_frac", "bullet lines 1.000 > 0.9")
    # blank lines are not lines: still 10 of 10
    assert run(step, all_bullets.replace("\n", "\n\n")).reason == "bullet_lines_frac"

    three_of_ten = "\n".join([line + "..."] * 3 + [line + "."] * 7)
    assert run(step, three_of_ten) == three_of_ten  # 0.3 is allowed
    four_of_ten = "\n".join([line + "..."] * 2 + [line + " …"] * 2 + [line + "."] * 6)
    assert run(step, four_of_ten) == Drop("ellipsis_lines_frac", "lines ending in an ellipsis 0.400 > 0.3")


def test_gopher_quality_alphabetic_tokens():
    step = GopherQuality(GopherQualityOptions())
    words = words_text(50).split()
    ten_numbers = " ".join("1984" if i % 5 == 0 else w for i, w in enumerate(words))  # 40 / 50 = 0.8
    assert run(step, ten_numbers) == ten_numbers
    eleven = ten_numbers.replace("river", "2_0", 1)  # underscores and digits only: no letter
    assert run(step, eleven) == Drop("alpha_words_frac", "tokens with a letter 0.780 < 0.8")
    # symbol runs are tokens without a letter: 50 words + 13 "|" = 50 / 63 = 0.794
    piped = " | ".join(" ".join(words[i:i + 4]) for i in range(0, 50, 4)) + " |"
    assert run(step, piped) == Drop("alpha_words_frac", "tokens with a letter 0.794 < 0.8")


def test_gopher_quality_stop_words_ignore_case():
    step = GopherQuality(GopherQualityOptions())
    cycle = ("The", "river", "THE", "stone")  # one distinct stop word, in two spellings
    one = words_text(50, cycle)
    assert run(step, one) == Drop("stop_words", "1 distinct stop words < 2")
    two = one.replace("stone", "With", 1)
    assert run(step, two) == two
    assert run(GopherQuality(GopherQualityOptions(min_stop_words=1)), one) == one
    custom = GopherQuality(GopherQualityOptions(stop_words=["River", "stone"]))
    assert run(custom, one) == one


# --------------------------------------------------------------------------- gopher repetition


def test_duplicate_line_and_paragraph_fractions():
    lines = [f"distinct line number {i} of the text" for i in range(7)]
    three_dups = "\n".join(lines + lines[:3])  # 3 of 10 lines repeat an earlier one
    step = GopherRepetition(only(GopherRepetitionOptions, dup_line_frac=0.3))
    assert run(step, three_dups) == Drop("dup_line_frac", "3/10 = 0.300 >= 0.3")
    two_dups = "\n".join(lines + lines[:2] + ["another distinct line"])
    assert run(step, two_dups) == two_dups

    paragraphs = three_dups.replace("\n", "\n\n")  # now 10 paragraphs, 3 repeated
    para_step = GopherRepetition(only(GopherRepetitionOptions, dup_para_frac=0.3))
    assert run(para_step, paragraphs) == Drop("dup_para_frac", "3/10 = 0.300 >= 0.3")
    assert run(para_step, three_dups) == three_dups  # a single paragraph


def test_duplicate_line_and_paragraph_character_fractions():
    step = GopherRepetition(only(GopherRepetitionOptions, dup_line_char_frac=0.2))
    text = "aaaa\nbbbb\naaaa\nccccc"  # 4 repeated characters of 20
    assert run(step, text) == Drop("dup_line_char_frac", "4/20 = 0.200 >= 0.2")
    assert run(step, text + "c") == text + "c"  # 4 / 21 = 0.19
    para_step = GopherRepetition(only(GopherRepetitionOptions, dup_para_char_frac=0.2))
    paragraphs = "aaaa\n\nbbbb\n\naaaa\n\nccc"  # 4 of 21 = 0.19
    assert run(para_step, paragraphs) == paragraphs
    assert run(GopherRepetition(only(GopherRepetitionOptions, dup_para_char_frac=0.18)), paragraphs) == \
        Drop("dup_para_char_frac", "4/21 = 0.190 >= 0.18")


def test_top_ngram_character_fraction():
    # "ab cd" twice (words 0-3 covered): 8 of 20 word characters
    text = "ab cd ab cd ef gh ij kl mn op"
    assert top_ngram_char_frac(TextStats(text), 2) == 0.4
    assert run(GopherRepetition(only(GopherRepetitionOptions, top_2gram_frac=0.4)), text) == \
        Drop("top_2gram_frac", "0.400 >= 0.4")
    assert run(GopherRepetition(only(GopherRepetitionOptions, top_2gram_frac=0.41)), text) == text
    # overlapping occurrences count each word once: "aa aa" at 0 and 1 covers 6 of 12 characters
    assert top_ngram_char_frac(TextStats("aa aa aa bb cc dd"), 2) == 0.5
    # a tie in count goes to the n-gram with more characters: "ccc ddd" covers 12 of 16
    assert top_ngram_char_frac(TextStats("a b a b ccc ddd ccc ddd"), 2) == 0.75
    # a 3-gram that occurs once is not repetition
    assert top_ngram_char_frac(TextStats("a b c d e f"), 3) == 0.0
    # below a threshold the cheap bound may be returned, never a value at or above it
    assert top_ngram_char_frac(TextStats(text), 2, threshold=0.9) < 0.9


def test_duplicate_ngram_character_fraction():
    # "a b c d e" at 0 and 6, first occurrence included: 10 of 15 word characters
    text = "a b c d e f a b c d e g h i j"
    assert dup_ngram_char_frac(TextStats(text), 5) == pytest.approx(10 / 15)
    assert dup_ngram_char_frac(TextStats(text), 6) == 0.0
    # overlapping repeated 5-grams (abcde and bcdef, twice each) cover every word once: 1.0
    assert dup_ngram_char_frac(TextStats("a b c d e f a b c d e f"), 5) == 1.0
    assert dup_ngram_char_frac(TextStats("a b c d e f a b c d e f"), 6) == 1.0
    assert dup_ngram_char_frac(TextStats("a b c d e f a b c d e f"), 7) == 0.0
    # word lengths weight the fraction: the repeated 5-gram holds 11 characters twice, of 23
    weighted = "aaaa bbbb c d e x aaaa bbbb c d e"
    assert dup_ngram_char_frac(TextStats(weighted), 5) == pytest.approx(22 / 23)
    step = GopherRepetition(only(GopherRepetitionOptions, dup_5gram_frac=0.6667))
    assert run(step, text) == text  # 0.66666 < 0.6667
    step = GopherRepetition(only(GopherRepetitionOptions, dup_5gram_frac=0.66))
    assert run(step, text) == Drop("dup_5gram_frac", "0.667 >= 0.66")
    step = GopherRepetition(only(GopherRepetitionOptions, dup_6gram_frac=0.14))
    assert run(step, "a b c d e f a b c d e f") == Drop("dup_6gram_frac", "1.000 >= 0.14")


def test_gopher_repetition_defaults_drop_spam_keep_prose():
    step = GopherRepetition(GopherRepetitionOptions())
    assert run(step, CLEAN_ENGLISH) == CLEAN_ENGLISH
    assert run(step, "Buy cheap watches now!\n" * 5 + CLEAN_ENGLISH).reason == "dup_line_frac"
    repeated_sentence = CLEAN_ENGLISH + (CLEAN_ENGLISH.split(". ")[0] + ". ") * 4
    assert run(step, repeated_sentence).reason.startswith(("top_", "dup_"))
    assert run(step, "") == ""  # nothing repeats in an empty text


# ------------------------------------------------------------------------------------- c4


C4_PAGE = "\n".join([
    "Home | About",  # no final punctuation
    "This is a fine sentence. And another one here.",  # kept: 2 sentences
    "Please enable JavaScript to continue reading this page.",  # javascript
    "We use cookies; see our Privacy Policy for details.",  # policy boilerplate
    "Short one.",  # 2 words
    "The river rose[1] after the storm[citation needed].",  # kept without the markers
    "Wait for it...",  # ellipsis
    "   ",
    "It rained. It poured. Then it stopped!",  # kept: 3 sentences
])


def test_c4_keeps_sentence_lines_and_removes_boilerplate():
    kept = run(C4Filter(C4Options()), C4_PAGE)
    assert kept == ("This is a fine sentence. And another one here.\n"
                    "The river rose after the storm.\n"
                    "It rained. It poured. Then it stopped!")
    clean = Document("clean", kept)
    assert C4Filter(C4Options())(clean) is clean  # nothing to change: the same document


def test_c4_line_rule_options():
    relaxed = C4Filter(C4Options(terminal_punctuation=False, drop_javascript_lines=False, drop_policy_lines=False,
                                 remove_citations=False, min_words_per_line=0, min_sentences=0))
    assert run(relaxed, C4_PAGE) == "\n".join(line.strip() for line in C4_PAGE.split("\n") if line.strip())
    no_terminal = C4Filter(C4Options(terminal_punctuation=False, min_sentences=0))
    assert run(no_terminal, "Home of the brave\nHome | About") == "Home of the brave"


def test_c4_long_word_lines():
    sentences = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    step = C4Filter(C4Options())
    ok = sentences + "\nA " + "x" * 1000 + " word."
    assert run(step, ok) == ok
    too_long = sentences + "\nA " + "x" * 1001 + " word."
    assert run(step, too_long) == Drop("too_few_sentences", "4 sentences in kept lines < 5")
    assert run(C4Filter(C4Options(max_word_length=0)), too_long) == too_long


def test_c4_page_rules():
    five = "One two three. Four five six. Seven eight nine. Ten eleven twelve. Thirteen fourteen fifteen."
    step = C4Filter(C4Options())
    assert run(step, five) == five
    four = five.rsplit(" ", 3)[0]
    assert run(step, four) == Drop("too_few_sentences", "4 sentences in kept lines < 5")
    assert run(C4Filter(C4Options(min_sentences=4)), four) == four
    # lorem ipsum and "{" drop the page wherever they are, even in a line the rules remove
    assert run(step, five + "\nLorem Ipsum dolor") == Drop("lorem_ipsum", "the page contains 'lorem ipsum'")
    assert run(step, five + "\nfunction f() {") == Drop("curly_bracket", "the page contains '{'")
    assert run(C4Filter(C4Options(drop_curly_bracket=False)), five + "\nfunction f() {") == five
    assert run(C4Filter(C4Options(min_sentences=0)), "no line survives") == \
        Drop("no_lines_kept", "every line was removed")


def test_count_sentences():
    assert count_sentences("Hello there. How are you? Fine") == 3
    assert count_sentences("It works!") == 1
    assert count_sentences('He said "stop." Then left.') == 2
    assert count_sentences("version 3.14 is out") == 1  # a dot inside a number ends nothing


# -------------------------------------------------------------------------------- fineweb


def test_fineweb_line_punctuation_fraction():
    step = FineWebQuality(only(FineWebQualityOptions, min_line_punct_frac=0.12))
    line = "a line that is long enough to count"
    three = "\n".join([line + "."] * 3 + [line + f" {i}" for i in range(22)])  # 3 / 25 = 0.12
    assert run(step, three) == Drop("line_punct_frac", "lines ending in punctuation 0.120 <= 0.12")
    four = "\n".join([line + "!"] * 3 + [line + ' "quoted."'] + [line + f" {i}" for i in range(21)])
    assert run(step, four) == four  # 4 / 25 = 0.16


def test_fineweb_duplicate_line_characters():
    lines = [f"line {i:02d} is a line of exactly forty char." for i in range(9)]
    assert {len(line) for line in lines} == {40}
    text = "\n".join(lines + [lines[0]])  # 40 of 400 characters repeated: 0.1
    step = FineWebQuality(only(FineWebQualityOptions, max_dup_line_char_frac=0.1))
    assert run(step, text) == Drop("dup_line_char_frac", "characters in repeated lines 0.100 >= 0.1")
    assert run(FineWebQuality(only(FineWebQualityOptions, max_dup_line_char_frac=0.11)), text) == text
    assert run(FineWebQuality(FineWebQualityOptions()), "\n".join(lines)) == "\n".join(lines)


def test_fineweb_short_lines():
    long_line = "x" * 30  # 30 characters is not short
    short_line = "y" * 29
    text = "\n".join([long_line, short_line, short_line])  # 2 / 3 = 0.667
    assert run(FineWebQuality(only(FineWebQualityOptions, max_short_line_frac=0.67)), text) == text
    assert run(FineWebQuality(only(FineWebQualityOptions, max_short_line_frac=0.66)), text) == \
        Drop("short_line_frac", "lines shorter than 30 chars 0.667 >= 0.66")
    assert run(FineWebQuality(only(FineWebQualityOptions, max_short_line_frac=0.5, short_line_length=29)),
               text) == text


def test_fineweb_newline_word_ratio_and_empty():
    line = "Extraordinarily wonderful adventures."  # 3 words
    text = "\n".join([line] * 10)  # 9 newlines / 30 words = 0.3: kept
    step = FineWebQuality(only(FineWebQualityOptions, max_newline_word_ratio=0.3))
    assert run(step, text) == text
    assert run(step, text + "\n") == Drop("newline_word_ratio", "newlines per word 0.333 > 0.3")
    assert run(FineWebQuality(FineWebQualityOptions()), " \n\n") == Drop("empty", "no non-blank line")


# ----------------------------------------------------------------------------- heuristics


def test_length_bounds():
    step = Length(LengthOptions(min_chars=5, max_chars=11, min_words=2, max_words=3))
    assert run(step, "ab cd") == "ab cd"
    assert run(step, "abcd") == Drop("too_few_chars", "4 chars < 5")
    assert run(step, "ab cd ef gh") == Drop("too_many_words", "4 words > 3")
    assert run(step, "abcdefghijkl") == Drop("too_many_chars", "12 chars > 11")
    assert run(step, "abcde") == Drop("too_few_words", "1 words < 2")
    assert run(Length(LengthOptions()), "... !!!") == Drop("too_few_words", "0 words < 1")


def test_character_heuristics():
    assert run(Heuristics(only(HeuristicsOptions, max_symbol_frac=0.2)), "abcd !") == "abcd !"  # 1 / 5
    assert run(Heuristics(only(HeuristicsOptions, max_symbol_frac=0.2)), "abc _!") == \
        Drop("symbol_frac", "symbols 0.400 > 0.2")  # "_" counts as a symbol
    assert run(Heuristics(only(HeuristicsOptions, max_digit_frac=0.3)), "ab 12 cdef gh") == \
        "ab 12 cdef gh"  # 2 / 10
    assert run(Heuristics(only(HeuristicsOptions, max_digit_frac=0.3)), "ab 1234 cdef") == \
        Drop("digit_frac", "digits 0.400 > 0.3")
    # letters of any script count: 7 letters of 8 non-space characters
    assert run(Heuristics(only(HeuristicsOptions, min_alpha_frac=0.6)), "Grüße, 東京") == "Grüße, 東京"
    assert run(Heuristics(only(HeuristicsOptions, min_alpha_frac=0.6)), "abc 1234") == \
        Drop("alpha_frac", "letters 0.429 < 0.6")
    assert run(Heuristics(HeuristicsOptions()), " \n ") == Drop("empty", "no non-whitespace character")


def test_line_heuristics():
    step = Heuristics(only(HeuristicsOptions, max_line_length=10))
    assert run(step, "0123456789\nabc") == "0123456789\nabc"
    assert run(step, "0123456789a\nabc") == Drop("line_length", "a line of 11 chars > 10")
    urls = "https://example.com/a\nwww.example.org\nA sentence with https://x.y in it."
    assert run(Heuristics(only(HeuristicsOptions, max_url_line_frac=0.5)), urls) == \
        Drop("url_line_frac", "bare URL lines 0.667 > 0.5")
    assert run(Heuristics(only(HeuristicsOptions, max_url_line_frac=0.7)), urls) == urls


# ------------------------------------------------------------------------ all filters, config


ALL_STEPS = ["length", "heuristics", "gopher_quality", "gopher_repetition", "c4", "fineweb_quality"]


@pytest.mark.parametrize("name", ALL_STEPS)
def test_clean_english_passes_every_filter_unchanged(name):
    step = build_step({"step": name}, 0)
    doc = Document("clean", CLEAN_ENGLISH)
    result = step(doc)
    assert isinstance(result, Document), result
    if name == "c4":  # C4 rewrites text as its kept lines: blank lines go, every line stays
        assert result.text == "\n".join(split_lines(CLEAN_ENGLISH))
    else:
        assert result is doc
    restored = pickle.loads(pickle.dumps(step))  # steps run in worker processes
    assert restored.options == step.options


def test_options_come_from_yaml_entries():
    step = build_step({"step": "gopher_quality", "min_words": 10, "max_hash_ratio": None}, 0)
    assert step.options.min_words == 10 and step.options.max_hash_ratio is None
    assert run(step, words_text(10)) == words_text(10)
    step = build_step({"step": "fineweb_quality", "max_dup_line_char_frac": 0.01}, 0)
    assert step.options.max_dup_line_char_frac == 0.01
    with pytest.raises(ConfigError, match="unknown config key 'steps\\[3\\].min_word'"):
        build_step({"step": "gopher_quality", "min_word": 10}, 3)
    with pytest.raises(ConfigError, match="steps\\[0\\].dup_5gram_frac"):
        build_step({"step": "gopher_repetition", "dup_5gram_frac": "high"}, 0)


def test_impossible_thresholds_are_config_errors():
    with pytest.raises(ConfigError, match="'gopher_repetition': option 'dup_line_frac' is a fraction, set it "
                                          "between 0 and 1 .*got 1.5"):
        build_step({"step": "gopher_repetition", "dup_line_frac": 1.5}, 0)
    with pytest.raises(ConfigError, match="'length': option 'min_words' must not be negative"):
        build_step({"step": "length", "min_words": -1}, 0)
    assert build_step({"step": "fineweb_quality", "max_short_line_frac": 1.0}, 0).options.max_short_line_frac == 1.0
