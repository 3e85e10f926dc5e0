"""Tokenizers: train (byte-level BPE, WordPiece, word, SentencePiece Unigram/BPE, char), save, load.

    from lmforge.tokenize import Tokenizer, train_tokenizer, load_tokenizer

Every kind shares the five special tokens ``<s> <pad> </s> <unk> <mask>`` (ids 0-4) and
saves to a directory with its native file plus ``lmforge_tokenizer.json``.
"""

from lmforge.tokenize.base import SPECIAL_TOKENS, Tokenizer
from lmforge.tokenize.registry import KINDS, load_tokenizer, train_tokenizer

__all__ = ["KINDS", "SPECIAL_TOKENS", "Tokenizer", "load_tokenizer", "train_tokenizer"]
