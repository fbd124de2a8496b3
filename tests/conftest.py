"""Shared fixtures: where the shared IR data lies, and skip reasons when it does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("NEGCLEAN_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _own_embedding_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets an empty embedding cache (negclean.embed_cache), never the user's ~/.cache one."""
    monkeypatch.setenv("NEGCLEAN_EMBED_CACHE", str(tmp_path_factory.mktemp("embed-cache")))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared IR data not found at {path} (CI has it; set NEGCLEAN_SHARED_DATA to point elsewhere)")
    return path


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return REPO / "examples"
