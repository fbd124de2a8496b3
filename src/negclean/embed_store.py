"""The on-disk layer of the embedding cache: one SQLite file of float32 vectors keyed by (space, text sha256).

A *space* is everything besides the text that changes a vector (model weights, backend, prefix, max length,
normalisation), hashed by ``negclean.embed_cache.EmbeddingSpace.key``. Each row keeps the vector's raw bytes,
its dimension and a checksum over (text digest, bytes): a row whose size, checksum or values do not add up is
reported as corrupt and recomputed by the caller, never used.

Several processes may read and write the same file at once: WAL journal, a busy timeout, and each write is one
transaction of ``INSERT OR REPLACE`` (two processes that embed the same text write the same row).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]

# a rowid table, not WITHOUT ROWID: rows of 1.5 KB vectors are too wide for it (measured: 4.7 KB of file and
# 220 us per stored MiniLM vector WITHOUT ROWID, 2.1 KB and 64 us with a rowid, 2-core VM)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    space TEXT NOT NULL, digest BLOB NOT NULL, dim INTEGER NOT NULL, vec BLOB NOT NULL, checksum BLOB NOT NULL,
    PRIMARY KEY (space, digest));
CREATE TABLE IF NOT EXISTS spaces (space TEXT PRIMARY KEY, description TEXT NOT NULL);
"""
_BUSY_MS = 60_000
_IN_CHUNK = 500  # digests per SELECT ... IN (...): under SQLite's default limit of 999 variables


def text_digest(text: str) -> bytes:
    """sha256 of a text's UTF-8 bytes (lone surrogates kept as they are, so any str has a digest)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _checksum(digest: bytes, data: bytes) -> bytes:
    return hashlib.blake2b(digest + data, digest_size=8).digest()


@dataclass(frozen=True)
class Lookup:
    """What the file held for some digests: the sound vectors, and the digests whose rows were corrupt."""

    found: dict[bytes, Vector]
    corrupt: frozenset[bytes]


class VectorStore:
    """Vectors by (space key, text digest) in one SQLite file, opened on first use (once per process)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self._con: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._con is None or self._pid != os.getpid():  # a forked child opens its own connection
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=_BUSY_MS / 1000, check_same_thread=False, isolation_level=None)
            try:
                con.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a power cut may lose the last writes only
                con.executescript(_SCHEMA)
            except sqlite3.Error:
                con.close()
                raise
            self._con, self._pid = con, os.getpid()
        return self._con

    def get(self, space: str, digests: Sequence[bytes], *, dim: int | None = None) -> Lookup:
        """The stored vectors of ``digests`` in ``space``; rows of another dimension than ``dim`` (when given),
        of the wrong size, with a bad checksum or with non-finite values count as corrupt."""
        found: dict[bytes, Vector] = {}
        corrupt: set[bytes] = set()
        with self._lock:
            con = self._connection()
            for start in range(0, len(digests), _IN_CHUNK):
                part = list(digests[start : start + _IN_CHUNK])
                marks = ",".join("?" * len(part))
                rows = con.execute(
                    f"SELECT digest, dim, vec, checksum FROM vectors WHERE space=? AND digest IN ({marks})",
                    [space, *part],
                ).fetchall()
                for digest, row_dim, data, check in rows:
                    vec = _decode(bytes(digest), row_dim, data, check, dim)
                    if vec is None:
                        corrupt.add(bytes(digest))
                    else:
                        found[bytes(digest)] = vec
        return Lookup(found, frozenset(corrupt))

    def put(self, space: str, digests: Sequence[bytes], vectors: Vector, *, description: str) -> None:
        """Store ``vectors`` (one row per digest) in one transaction; ``description`` names the space for people
        reading the file."""
        rows = []
        for digest, vec in zip(digests, vectors):
            data = np.ascontiguousarray(vec, dtype="<f4").tobytes()
            rows.append((space, digest, int(vec.shape[0]), data, _checksum(digest, data)))
        with self._lock:
            con = self._connection()
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute("INSERT OR IGNORE INTO spaces (space, description) VALUES (?, ?)", (space, description))
                con.executemany(
                    "INSERT OR REPLACE INTO vectors (space, digest, dim, vec, checksum) VALUES (?, ?, ?, ?, ?)", rows
                )
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def count(self, space: str | None = None) -> int:
        """Rows in the file (in one space when given)."""
        with self._lock:
            con = self._connection()
            if space is None:
                return int(con.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
            return int(con.execute("SELECT COUNT(*) FROM vectors WHERE space=?", (space,)).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._con is not None and self._pid == os.getpid():
                self._con.close()
            self._con = None


def _decode(digest: bytes, dim: object, data: object, check: object, want_dim: int | None) -> Vector | None:
    if not isinstance(dim, int) or not isinstance(data, bytes) or not isinstance(check, bytes):
        return None
    if dim <= 0 or len(data) != 4 * dim or (want_dim is not None and dim != want_dim):
        return None
    if _checksum(digest, data) != check:
        return None
    vec = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if not np.isfinite(vec).all():
        return None
    return vec


__all__ = ["Lookup", "Vector", "VectorStore", "text_digest"]
