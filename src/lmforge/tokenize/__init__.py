"""Tokenizers: train (byte-level BPE, WordPiece, word, SentencePiece Unigram/BPE, char), save, load.

    from lmforge.tokenize import Tokenizer, train_tokenizer, load_tokenizer

Every trained kind shares the five special tokens ``<s> <pad> </s> <unk> <mask>`` (ids 0-4) and
saves to a directory with its native file plus ``lmforge_tokenizer.json``. The "pretrained"
kind (``load_hf_tokenizer``) is a published HF tokenizer.json with its own special tokens,
mapped to roles; a role it lacks has id None (``Tokenizer.require_id`` says so in one line).
"""

from lmforge.tokenize.base import SPECIAL_TOKENS, Tokenizer
from lmforge.tokenize.registry import KINDS, LOADABLE_KINDS, load_hf_tokenizer, load_tokenizer, train_tokenizer

__all__ = ["KINDS", "LOADABLE_KINDS", "SPECIAL_TOKENS", "Tokenizer", "load_hf_tokenizer", "load_tokenizer",
           "train_tokenizer"]
