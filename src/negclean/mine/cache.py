"""On-disk cache of corpus embeddings: plain ``.npy`` files (no pickle), memory-mapped when read.

Key: the model's identity, the passage prefix, whether titles are embedded, and the corpus content
hash. A build writes chunk by chunk into ``<key>.partial.npy`` and records progress, so an interrupted
build resumes where it stopped; the file is renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from negclean.data.atomic import atomic_write

ENV_CACHE_DIR = "NEGCLEAN_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$NEGCLEAN_CACHE_DIR/embeddings`` or ``~/.cache/negclean/embeddings``."""
    base = os.environ.get(ENV_CACHE_DIR)
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "negclean") / "embeddings"


def embedding_key(*, model_identity: str, corpus_hash: str, prefix: str, include_title: bool) -> str:
    """File-name-safe key: readable model slug plus a hash of everything that changes the vectors."""
    blob = json.dumps(
        {"model": model_identity, "corpus": corpus_hash, "prefix": prefix, "title": include_title, "v": 1},
        sort_keys=True,
    )
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_identity.rsplit("/", 1)[-1])[:48]
    return f"{slug}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock so that two runs do not build the same file at once (POSIX only)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True))


class EmbeddingCache:
    """A folder of ``<key>.npy`` float32 matrices with ``<key>.json`` descriptions."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npy"

    def load(self, key: str, *, rows: int) -> np.ndarray | None:
        """The cached matrix memory-mapped read-only, or None when absent or not of ``rows`` rows."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError):
            return None  # truncated or foreign file: rebuilt by the caller
        if arr.ndim != 2 or arr.shape[0] != rows or arr.dtype != np.float32:
            return None
        return arr

    def build(
        self,
        key: str,
        *,
        rows: int,
        encode: Callable[[int, int], np.ndarray],
        chunk: int = 4096,
        describe: dict | None = None,
        on_rows: Callable[[int], None] | None = None,
    ) -> tuple[np.ndarray, bool]:
        """Load ``key`` or compute it with ``encode(start, stop)`` chunk by chunk.

        Returns (memory-mapped matrix, whether it came from the cache). Memory use is one chunk of
        vectors; the matrix itself stays on disk.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root / f"{key}.lock"):
            found = self.load(key, rows=rows)
            if found is not None:
                return found, True
            partial = self.root / f"{key}.partial.npy"
            progress = self.root / f"{key}.partial.json"
            done, out = self._resume(partial, progress, rows)
            if done and on_rows:
                on_rows(done)
            while done < rows:
                stop = min(done + chunk, rows)
                vecs = np.asarray(encode(done, stop), dtype=np.float32)
                if vecs.shape[0] != stop - done:
                    raise RuntimeError(f"encoder returned {vecs.shape[0]} vectors for {stop - done} passages")
                if out is None:
                    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(rows, vecs.shape[1]))
                out[done:stop] = vecs
                out.flush()
                done = stop
                _write_json(progress, {"rows_done": done, "rows": rows, "dim": int(out.shape[1])})
                if on_rows:
                    on_rows(vecs.shape[0])
            del out
            os.replace(partial, self.path(key))
            progress.unlink(missing_ok=True)
            _write_json(self.root / f"{key}.json", {**(describe or {}), "rows": rows, "key": key})
            arr = self.load(key, rows=rows)
            assert arr is not None
            return arr, False

    @staticmethod
    def _resume(partial: Path, progress: Path, rows: int) -> tuple[int, np.memmap | None]:
        if not (partial.is_file() and progress.is_file()):
            return 0, None
        try:
            state = json.loads(progress.read_text())
            arr = np.load(partial, mmap_mode="r+", allow_pickle=False)
        except (ValueError, OSError):
            return 0, None
        if arr.ndim != 2 or arr.shape[0] != rows or state.get("rows") != rows:
            return 0, None
        return int(state.get("rows_done", 0)), arr
