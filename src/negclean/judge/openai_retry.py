"""Retry policy, counters and URL helpers of the ``openai`` judge backend (see ``openai_chat``)."""

from __future__ import annotations

import ipaddress
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit


@dataclass
class OpenAIStats:
    """Counters of one judge, over all its batches; read them (or ``as_dict()``) to report a run.

    ``calls`` are logical calls (one per chunk of candidates), ``requests`` the HTTP attempts they
    took; ``errors`` counts failed attempts by kind (rate_limited, server_error, connection, timeout,
    bad_response, bad_request, unreachable: a connect that failed, which ends the run when a call's last
    attempt meets it); ``failed`` counts calls that gave up (their candidates are undecided);
    ``budget_refused`` counts calls not sent because their worst case did not fit under --max-cost.
    Tokens are the server's ``usage``, or our count where a response had none (``usage_missing``).
    """

    calls: int = 0
    requests: int = 0
    retries: int = 0
    succeeded: int = 0
    failed: int = 0
    truncated: int = 0
    usage_missing: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    backoff_s: float = 0.0
    budget_refused: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: float) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": self.calls,
                "requests": self.requests,
                "retries": self.retries,
                "succeeded": self.succeeded,
                "failed": self.failed,
                "truncated": self.truncated,
                "usage_missing": self.usage_missing,
                "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out,
                "backoff_s": round(self.backoff_s, 3),
                "budget_refused": self.budget_refused,
                "errors": dict(self.errors),
            }


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date); None if absent."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, *, base: float, cap: float, retry_after: float | None, rng: random.Random) -> float:
    """Wait before retry number ``attempt + 1``: Retry-After plus up to 10% jitter when the server gave
    one, else exponential ``base * 2**attempt`` with equal jitter (half fixed, half random); never above ``cap``."""
    if retry_after is not None:
        return min(cap, retry_after * (1.0 + 0.1 * rng.random()))
    step = min(cap, base * (2**attempt))
    return float(step / 2 + rng.uniform(0, step / 2))


def is_loopback(url: str | None) -> bool:
    host = urlsplit(url).hostname if url else None
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def safe_url(url: str) -> str:
    """The URL without user info or query (either could hold a secret)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
