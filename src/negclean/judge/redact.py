"""Removing an API key from text a server sent back, before that text reaches any artifact.

Servers echo keys: OpenAI's 401 repeats a masked key, proxies and compatible servers put the key (whole,
masked, or cut) into 429/500 error bodies, and a model can be made to write it into a completion. Every text
that comes from a server (error messages, answers stored as the raw output of a call) goes through ``redact``
with the key's value, whatever that value looks like. It removes:

- the key itself;
- any white-space-delimited token holding a piece of the key of ``MIN_FRAGMENT`` or more characters (a key
  shown as ``abc...<last 12 characters>``);
- any token masked with ``***``, ``•••``, ``...`` or ``…`` whose visible part begins or ends like the key (four
  characters or more), e.g. ``abcd****wxyz``;
- anything shaped like an OpenAI key (``sk-...``), whose first characters are kept to tell keys apart.

Keys shorter than 4 characters are too short to search for and are only removed as ``sk-`` keys.
"""

from __future__ import annotations

import functools
import re

MASK = "***"
#: the shortest piece of a key that is removed wherever it appears
MIN_FRAGMENT = 6
_AFFIX = 4  # a masked token whose visible part starts or ends with this much of the key is the key
_SK_KEY = re.compile(r"\b(sk-[A-Za-z0-9_*\-]{2})[A-Za-z0-9_*\-]+")
_MASK_RUN = re.compile(r"\*{3,}|•{2,}|\.{3,}|…")
_TOKENS = re.compile(r"(\s+)")
_PUNCTUATION = "\"'`.,;:!?()[]{}<>"


@functools.lru_cache(maxsize=8)
def _fragment_pattern(secret: str) -> re.Pattern[str] | None:
    """Any piece of ``secret`` of MIN_FRAGMENT characters (None when the key is too short to cut)."""
    if len(secret) < 8:
        return None
    pieces = sorted({secret[i : i + MIN_FRAGMENT] for i in range(len(secret) - MIN_FRAGMENT + 1)})
    return re.compile("|".join(map(re.escape, pieces)))


def _is_masked_key(token: str, secret: str) -> bool:
    for part in _MASK_RUN.split(token):
        part = part.strip(_PUNCTUATION)
        if len(part) >= _AFFIX and (secret.startswith(part) or secret.endswith(part)):
            return True
    return False


def redact(text: str, secret: str | None) -> str:
    """``text`` with every trace of ``secret`` (an API key's value) and every ``sk-`` key replaced by ``***``."""
    secret = (secret or "").strip()
    if len(secret) >= 4:
        if secret in text:
            text = text.replace(secret, MASK)
        fragments = _fragment_pattern(secret)
        hit = fragments is not None and fragments.search(text) is not None
        if hit or _MASK_RUN.search(text):
            parts = _TOKENS.split(text)
            for i in range(0, len(parts), 2):  # even items are tokens, odd ones the white space between them
                token = parts[i]
                if (fragments is not None and hit and fragments.search(token)) or (
                    _MASK_RUN.search(token) and _is_masked_key(token, secret)
                ):
                    parts[i] = MASK
            text = "".join(parts)
    return _SK_KEY.sub(r"\1***", text)


__all__ = ["MASK", "MIN_FRAGMENT", "redact"]
