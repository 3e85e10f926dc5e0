"""Streaming text out of token ids: partial UTF-8 characters and stop strings are held back."""

from lmforge.sample import stream_text


def byte_decode(ids: list[int]) -> str:
    """A byte-level 'tokenizer': one token per UTF-8 byte, like byte-level BPE at its finest."""
    return bytes(ids).decode("utf-8", errors="replace")


def pieces(text: str, stop=(), eos_after: int | None = None) -> list[str]:
    ids = list(text.encode("utf-8"))
    if eos_after is not None:
        ids = ids[:eos_after] + [999] + ids[eos_after:]
    return list(stream_text(iter(ids), byte_decode, eos_id=999, stop=stop))


def test_streamed_pieces_join_to_the_text_and_never_split_a_character():
    text = "héllo wörld ✓ 🙂"
    out = pieces(text)
    assert "".join(out) == text
    assert all("\ufffd" not in piece for piece in out)  # half characters are never printed
    assert len(out) > 5  # it really streams


def test_stop_string_ends_the_text_before_it():
    assert "".join(pieces("def f():\n    pass\n\ndef g():", stop=["\n\n"])) == "def f():\n    pass"
    # the earliest of several stop strings wins, and no prefix of one is printed early
    out = pieces("abcXYdefXYZ", stop=["XYZ", "d"])
    assert "".join(out) == "abcXY"


def test_eos_ends_the_text():
    assert "".join(pieces("first second", eos_after=5)) == "first"
