"""Content hashes: stable ids for text-only formats and keys for the judgment store."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Fold case, Unicode form and white space so that trivially different copies compare equal."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _WS.sub(" ", text).strip()


def text_hash(text: str, *, length: int = 32) -> str:
    """Hex digest of the exact text (sha256, truncated); used as a content key."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def content_docid(text: str, title: str = "") -> str:
    """Docid for passages that come without one (FlagEmbedding, sentence-transformers columns)."""
    return "h" + text_hash(title + "\x1f" + text, length=16)


def passage_key(text: str, title: str = "") -> str:
    """Store key of a passage: its content, independent of the docid it carries in one dataset."""
    return text_hash(title + "\x1f" + text)
