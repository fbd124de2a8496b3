"""Files that appear complete or not at all: write under a temporary name in the same folder, fsync, rename.

Every writer of a file that another process (or a resumed run) may read goes through here, so that a crash, a
Ctrl-C or a full disk never leaves half a file under the final name. The temporary file is created with
``os.open(..., 0o666)``, so the operating system applies the process umask itself: the final file gets the
usual permissions of a new file (unlike ``tempfile.mkstemp``'s 0600), and nothing reads or changes the umask
(``os.umask`` is process-wide, so reading it by setting it races with other threads).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any, Literal, overload

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _create_temp(path: Path, suffix: str) -> tuple[int, Path]:
    """A new, empty file next to ``path`` (hidden name, mode 0o666 less the umask); its descriptor and path."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp{suffix}")
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: could not create a temporary file for {path.name} (100 names taken)")


def fsync_path(path: str | Path) -> None:
    """fsync a file or folder by name, best effort: a folder makes a rename in it durable where the platform
    allows it (POSIX); where it cannot be opened or synced, nothing happens."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@overload
def atomic_open(
    path: str | os.PathLike[str],
    mode: Literal["w"] = "w",
    *,
    encoding: str = "utf-8",
    newline: str | None = None,
    buffering: int = -1,
) -> AbstractContextManager[IO[str]]: ...


@overload
def atomic_open(
    path: str | os.PathLike[str],
    mode: Literal["wb"],
    *,
    encoding: str = "utf-8",
    newline: str | None = None,
    buffering: int = -1,
) -> AbstractContextManager[IO[bytes]]: ...


@contextmanager
def atomic_open(
    path: str | os.PathLike[str],
    mode: Literal["w", "wb"] = "w",
    *,
    encoding: str = "utf-8",
    newline: str | None = None,
    buffering: int = -1,
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing (``"w"`` text or ``"wb"`` bytes); it appears only if the block succeeds.

    The parent folder is created. On an exception the temporary file is removed and the old file (if any)
    stays as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', not {mode!r}")
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(final, "")
    try:
        if mode == "wb":
            fh: IO[Any] = os.fdopen(fd, "wb", buffering=buffering)
        else:
            fh = os.fdopen(fd, "w", encoding=encoding, newline=newline, buffering=buffering)
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(final.parent)


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically; returns the path."""
    final = Path(path)
    if isinstance(data, bytes):
        with atomic_open(final, "wb") as bfh:
            bfh.write(data)
    else:
        with atomic_open(final, "w", encoding=encoding) as tfh:
            tfh.write(data)
    return final


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """A temporary path for a library that writes files by name (faiss, pyarrow, numpy's ``.npz``).

    The block writes the file at the yielded path; on success it is fsynced and renamed to ``path``. ``suffix``
    ends the temporary name, for libraries that choose the format by it or append it (``np.savez`` adds
    ``.npz`` to a name without it). The file exists (empty, with the umask's permissions) when the block starts,
    so a library that truncates it keeps those permissions.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(final, suffix)
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(final.parent)


__all__ = ["atomic_open", "atomic_path", "atomic_write", "fsync_path"]
