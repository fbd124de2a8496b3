"""A content-addressed embedding cache shared by every stage that embeds (mining, the similarity and learned
judges, evaluation).

A vector is keyed by its *space* (``EmbeddingSpace``: the model's weights id from ``model_identity``, the
backend, the prefix, the max length and the normalisation) and the sha256 of its text. ``CachedEmbedder`` wraps
any embedder with the ``encode(texts, prefix=..., batch_size=...)`` protocol and serves each text from

1. memory: the vectors this wrapper already returned (one judge keeps one wrapper for a whole run, so the
   screen embeds a passage once however many chunks it comes back in), bounded by ``memory_bytes``;
2. disk: ``negclean.embed_store.VectorStore``, one SQLite file, by default
   ``~/.cache/negclean/embeddings/vectors.sqlite`` (``$NEGCLEAN_CACHE_DIR/embeddings`` when that is set);
3. the model: every text found in neither, in one ``encode`` call per request, then stored in both.

Where the file lies: the ``cache`` keyword (a folder, or a file ending in ``.sqlite``/``.db``, or ``"off"``)
wins, then the environment variable ``NEGCLEAN_EMBED_CACHE`` (same values), then the default. ``off`` keeps
nothing on disk: vectors are still reused within a run, never across runs. An embedder without an ``identity``
(test doubles, ad-hoc wrappers) cannot be keyed and passes through unchanged.

Each wrapper counts, per space, the texts asked for and how each was served (``EmbedCounts``); the cascade
runner adds them up into ``summary.json`` (``cascade.embeddings``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from negclean.embed_counts import EmbedCounts as EmbedCounts
from negclean.embed_counts import EmbedTally as EmbedTally
from negclean.embed_counts import merge_counts as merge_counts
from negclean.embed_store import Vector, VectorStore, text_digest

ENV_EMBED_CACHE = "NEGCLEAN_EMBED_CACHE"
ENV_CACHE_DIR = "NEGCLEAN_CACHE_DIR"
FILE_NAME = "vectors.sqlite"
OFF = "off"
#: vectors kept in memory per wrapper: 256 MiB is ~170,000 MiniLM vectors (384 float32)
DEFAULT_MEMORY_BYTES = 256 * 2**20
DEFAULT_BACKEND = "torch"


class Encoder(Protocol):
    """What ``CachedEmbedder`` wraps: ``negclean.embed.Embedder`` and anything shaped like it."""

    def encode(self, texts: Sequence[str], *, prefix: str = "", batch_size: int = 64) -> Any: ...


@dataclass(frozen=True)
class EmbeddingSpace:
    """Everything besides the text that changes a vector."""

    model: str  #: weights id (``negclean.embed.model_identity``)
    backend: str  #: the runtime that computes it (``torch``; another backend gives other numbers)
    prefix: str
    max_seq_length: int | None  #: tokens the model reads (the rest of a text does not count)
    normalize: bool

    def key(self) -> str:
        blob = json.dumps({**self.__dict__, "v": 1}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]

    def describe(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, ensure_ascii=False)


def default_cache_file() -> Path:
    """``$NEGCLEAN_CACHE_DIR/embeddings/vectors.sqlite`` or ``~/.cache/negclean/embeddings/vectors.sqlite``."""
    base = os.environ.get(ENV_CACHE_DIR)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "negclean"
    return root / "embeddings" / FILE_NAME


def cache_file(cache: str | Path | None = None) -> Path | None:
    """The SQLite file for a ``cache`` option (None: ``$NEGCLEAN_EMBED_CACHE``, else the default); None for off."""
    value: str | Path | None = cache
    if value is None:
        value = os.environ.get(ENV_EMBED_CACHE) or None
    if value is None:
        return default_cache_file()
    if isinstance(value, str) and value.strip().lower() == OFF:
        return None
    path = Path(value).expanduser()
    return path if path.suffix in (".sqlite", ".db") else path / FILE_NAME


def space_of(embedder: object, *, prefix: str) -> EmbeddingSpace | None:
    """The space of ``embedder``'s vectors for ``prefix``; None when it states no ``identity``."""
    identity = getattr(embedder, "identity", None)
    if not isinstance(identity, str) or not identity:
        return None
    max_len = getattr(embedder, "max_seq_length", None)
    if max_len is None:
        max_len = getattr(getattr(embedder, "model", None), "max_seq_length", None)
    normalize = getattr(embedder, "normalize", True)
    return EmbeddingSpace(
        model=identity,
        backend=backend_of(embedder),
        prefix=prefix,
        max_seq_length=max_len if isinstance(max_len, int) else None,
        normalize=bool(normalize),
    )


def backend_of(embedder: object) -> str:
    """The runtime behind an embedder: its ``backend`` (or its model's: sentence-transformers says ``torch``,
    ``onnx`` or ``openvino``), ``onnx`` for negclean's own ONNX encoder, else ``torch``."""
    model = getattr(embedder, "model", None)
    for value in (getattr(embedder, "backend", None), getattr(model, "backend", None)):
        if isinstance(value, str) and value:
            return value
    return "onnx" if "onnx" in type(model).__name__.lower() else DEFAULT_BACKEND


class CachedEmbedder:
    """An embedder behind the memory and disk layers (see the module docstring); same ``encode`` protocol."""

    def __init__(
        self,
        inner: Encoder,
        *,
        cache: str | Path | None = None,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        tally: EmbedTally | None = None,
    ):
        self.inner = inner
        self.tally = tally if tally is not None else EmbedTally()
        self.path = cache_file(cache)
        self.memory_bytes = memory_bytes
        self._store = VectorStore(self.path) if self.path is not None else None
        self._memory: dict[tuple[str, bytes], Vector] = {}
        self._memory_used = 0
        self._spaces: dict[tuple[str, int | None], EmbeddingSpace | None] = {}
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:  # dim, name, model, ... of the wrapped embedder
        if name == "inner":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def identity(self) -> str | None:
        value = getattr(self.inner, "identity", None)
        return value if isinstance(value, str) else None

    def counts(self) -> tuple[EmbedCounts, ...]:
        """What this wrapper (and any other sharing its tally) served so far, per (model, backend)."""
        return self.tally.counts()

    def _space(self, prefix: str) -> EmbeddingSpace | None:
        # the weights of a loaded model do not change: its identity is computed once per prefix and max length
        max_len = getattr(getattr(self.inner, "model", None), "max_seq_length", None)
        memo = (prefix, max_len if isinstance(max_len, int) else None)
        if memo not in self._spaces:
            self._spaces[memo] = space_of(self.inner, prefix=prefix)
        return self._spaces[memo]

    def _count(self, model: str, backend: str, **nums: int) -> None:
        self.tally.add(EmbedCounts(model, backend, **nums))

    def encode(
        self, texts: Sequence[str], *, prefix: str = "", batch_size: int = 64, show_progress: bool = False
    ) -> Vector:
        """Vectors of ``texts`` (each after ``prefix``), an (n, dim) float32 array: each distinct text is
        looked up in memory, then on disk, and only the rest goes to the model, in one call."""
        texts = list(texts)
        with self._lock:
            space = self._space(prefix)
            if space is None:
                vecs = self._inner_encode(texts, prefix=prefix, batch_size=batch_size, show_progress=show_progress)
                label = str(getattr(self.inner, "name", type(self.inner).__name__))
                self._count(label, DEFAULT_BACKEND, requested=len(texts), embedded=len(texts))
                return vecs
            return self._encode_cached(texts, space, batch_size=batch_size, show_progress=show_progress)

    def _encode_cached(
        self, texts: list[str], space: EmbeddingSpace, *, batch_size: int, show_progress: bool
    ) -> Vector:
        key = space.key()
        digests = [text_digest(t) for t in texts]
        first: dict[bytes, str] = {}
        for d, t in zip(digests, texts):
            first.setdefault(d, t)
        dim = getattr(self.inner, "dim", None)
        dim = dim if isinstance(dim, int) else None
        got: dict[bytes, Vector] = {}
        for d in first:
            vec = self._memory.get((key, d))
            if vec is not None:
                got[d] = vec
        from_memory = len(got)
        todo = [d for d in first if d not in got]
        corrupt: frozenset[bytes] = frozenset()
        if todo and self._store is not None:
            try:
                found = self._store.get(key, todo, dim=dim)
            except sqlite3.Error as exc:
                self._disk_failed(exc)
            else:
                corrupt = found.corrupt
                got.update(found.found)
                for d, vec in found.found.items():
                    self._remember(key, d, vec)
        from_disk = len(got) - from_memory
        missing = [d for d in first if d not in got]
        if missing:
            vecs = self._inner_encode(
                [first[d] for d in missing], prefix=space.prefix, batch_size=batch_size, show_progress=show_progress
            )
            if dim is None and got:
                dim = len(next(iter(got.values())))
            if vecs.ndim != 2 or vecs.shape[0] != len(missing) or (dim is not None and vecs.shape[1] != dim):
                raise RuntimeError(
                    f"embedding model {space.model!r} returned an array of shape {vecs.shape} for "
                    f"{len(missing)} texts (expected {len(missing)} rows of {dim or 'its'} "
                    "dimensions)"
                )
            for d, vec in zip(missing, vecs):
                got[d] = vec
                self._remember(key, d, vec)
            if self._store is not None:
                try:
                    self._store.put(key, missing, vecs, description=space.describe())
                except sqlite3.Error as exc:
                    self._disk_failed(exc)
        self._count(
            space.model,
            space.backend,
            requested=len(texts),
            embedded=len(missing),
            from_memory=from_memory,
            from_disk=from_disk,
            corrupt=len(corrupt),
        )
        if not texts:
            width = dim if dim is not None else int(getattr(self.inner, "dim", 0) or 0)
            return np.zeros((0, width), dtype=np.float32)
        return np.stack([got[d] for d in digests]).astype(np.float32, copy=False)

    def _inner_encode(self, texts: list[str], *, prefix: str, batch_size: int, show_progress: bool) -> Vector:
        if show_progress:
            out = self.inner.encode(texts, prefix=prefix, batch_size=batch_size, show_progress=True)  # type: ignore[call-arg]
        else:
            out = self.inner.encode(texts, prefix=prefix, batch_size=batch_size)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _remember(self, key: str, digest: bytes, vec: Vector) -> None:
        if self.memory_bytes <= 0:
            return
        row = np.array(vec, dtype=np.float32, copy=True)  # not a view that keeps a whole batch alive
        self._memory[(key, digest)] = row
        self._memory_used += row.nbytes
        while self._memory_used > self.memory_bytes and self._memory:
            oldest = next(iter(self._memory))
            self._memory_used -= self._memory.pop(oldest).nbytes

    def _disk_failed(self, exc: sqlite3.Error) -> None:
        warnings.warn(
            f"embedding cache {self.path}: {exc}; going on without it (vectors are computed, not "
            f"stored). Delete the file, point {ENV_EMBED_CACHE} at a writable folder, or set "
            f"{ENV_EMBED_CACHE}=off.",
            RuntimeWarning,
            stacklevel=3,
        )
        if self._store is not None:
            self._store.close()
        self._store = None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def cached(
    embedder: Any,
    *,
    cache: str | Path | None = None,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    tally: EmbedTally | None = None,
) -> Any:
    """``embedder`` behind the cache: a ``CachedEmbedder`` as is (it keeps its own cache and tally), an embedder
    without ``identity`` unchanged (it cannot be keyed), anything else wrapped."""
    if isinstance(embedder, CachedEmbedder) or space_of(embedder, prefix="") is None:
        return embedder
    return CachedEmbedder(embedder, cache=cache, memory_bytes=memory_bytes, tally=tally)


def tally_of(embedder: object, default: EmbedTally) -> EmbedTally:
    """The tally an embedder (as returned by ``cached``) counts into: its own for a ``CachedEmbedder``."""
    return embedder.tally if isinstance(embedder, CachedEmbedder) else default


def counts_of(embedder: object) -> tuple[EmbedCounts, ...]:
    """The counts of a ``CachedEmbedder``; () for anything else (nothing counted)."""
    return embedder.counts() if isinstance(embedder, CachedEmbedder) else ()


__all__ = [
    "CachedEmbedder",
    "DEFAULT_MEMORY_BYTES",
    "ENV_EMBED_CACHE",
    "EmbedCounts",
    "EmbedTally",
    "EmbeddingSpace",
    "backend_of",
    "cache_file",
    "cached",
    "counts_of",
    "default_cache_file",
    "merge_counts",
    "space_of",
    "tally_of",
]
