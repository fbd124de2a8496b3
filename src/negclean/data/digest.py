"""Content digests of files and model directories, computed once and remembered.

A verdict or a cached embedding depends on what a file holds, not on its name: these digests let keys
follow content (a copied model has the digest of the original; a file rewritten in place gets a new one).

Hashing a 1 GB model file takes seconds, so a file's sha256 is remembered by its identity on disk
(resolved path, device, inode, size, modification and change times): in this process, and for files of
``DISK_MEMO_BYTES`` or more also in ``$NEGCLEAN_CACHE_DIR/digests`` (``~/.cache/negclean/digests``), one
small file per entry. Any write to the file changes its times, so a remembered digest is never stale; a
memo that cannot be written (read-only home) is skipped, never an error.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from negclean.data.atomic import atomic_write

#: files at least this large have their digest remembered on disk as well (smaller ones are quick to hash)
DISK_MEMO_BYTES = 16 << 20
_CHUNK = 8 << 20
_memo: dict[tuple[str, int, int, int, int, int], str] = {}
_lock = threading.Lock()


def _memo_dir() -> Path:
    base = os.environ.get("NEGCLEAN_CACHE_DIR")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "negclean") / "digests"


def _identity(path: Path) -> tuple[str, int, int, int, int, int]:
    real = os.path.realpath(path)
    st = os.stat(real)
    return (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a file's bytes, read in chunks, not remembered (``file_digest`` remembers)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a file's bytes, remembered by the file's identity on disk (see the module docstring)."""
    ident = _identity(Path(path))
    with _lock:
        known = _memo.get(ident)
    if known is not None:
        return known
    size = ident[3]
    memo_file = None
    if size >= DISK_MEMO_BYTES:
        memo_file = _memo_dir() / hashlib.sha256(repr(ident).encode()).hexdigest()[:32]
        try:
            text = memo_file.read_text(encoding="ascii").strip()
            if len(text) == 64:
                with _lock:
                    _memo[ident] = text
                return text
        except OSError:
            pass
    value = file_sha256(ident[0])
    for _ in range(3):  # written while we read it: the digest may mix two versions, so read it again
        now = _identity(Path(path))
        if now == ident:
            break
        ident, value = now, file_sha256(now[0])
    with _lock:
        _memo[ident] = value
    if memo_file is not None:
        try:
            atomic_write(memo_file, value + "\n", encoding="ascii")
        except OSError:
            pass
    return value


def directory_digest(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) over a directory's files: relative names and contents, hidden files and folders left out
    (``.git``, ``.cache`` lock and metadata files change without the weights changing). Where the
    directory lies does not matter: a copy has the same digest."""
    root = Path(path).expanduser()
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        digest.update(f"{rel.as_posix()}\0{file_digest(file)}\n".encode())
    return digest.hexdigest()


def hub_revision(name: str, *, cache_dir: str | os.PathLike[str] | None = None) -> str | None:
    """The commit a Hugging Face hub model name resolves to in the local hub cache (``refs/main``), read
    offline; None when the model is not in the cache (or the name is not a hub name)."""
    if not name or name.startswith((".", "/", "~")) or name.count("/") > 1:
        return None
    if cache_dir is not None:
        roots = [Path(cache_dir).expanduser()]
    else:
        env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
        home = os.environ.get("HF_HOME")
        roots = (
            [Path(env).expanduser()]
            if env
            else [(Path(home).expanduser() if home else Path.home() / ".cache" / "huggingface") / "hub"]
        )
    names = [name] if "/" in name else [name, f"sentence-transformers/{name}"]
    for root in roots:
        for repo in names:
            ref = root / f"models--{repo.replace('/', '--')}" / "refs" / "main"
            try:
                commit = ref.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError):
                continue
            if commit:
                return commit
    return None


def model_content_identity(name: str, *, cache_dir: str | os.PathLike[str] | None = None) -> str | None:
    """What identifies a model's weights: a local directory's content digest, a local file's sha256, or a hub
    name's cached revision; None when none of these can be known offline (the name is all there is)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return f"dir-sha256:{directory_digest(path)}"
    if path.is_file():
        return f"sha256:{file_digest(path)}"
    revision = hub_revision(name, cache_dir=cache_dir)
    return None if revision is None else f"hub:{name}@{revision}"
