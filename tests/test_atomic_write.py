"""negclean.data.atomic: a file appears complete or not at all, with the permissions the umask gives."""

from __future__ import annotations

import os
import stat
import threading

import numpy as np
import pytest

from negclean.data.atomic import atomic_open, atomic_path, atomic_write


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_text_and_bytes_land_whole_in_a_new_folder(tmp_path):
    text = tmp_path / "a" / "b" / "out.json"
    assert atomic_write(text, "héllo\n") == text
    assert text.read_text(encoding="utf-8") == "héllo\n"
    blob = tmp_path / "blob.bin"
    atomic_write(blob, b"\x00\xff" * 1000)
    assert blob.read_bytes() == b"\x00\xff" * 1000
    assert _leftovers(tmp_path) == [] and _leftovers(text.parent) == []


def test_permissions_follow_the_umask_not_mkstemps_0600(tmp_path, umask_027):
    path = tmp_path / "f.txt"
    atomic_write(path, "x")
    assert _mode(path) == 0o640  # 0o666 less the umask 0o027
    with atomic_open(tmp_path / "g.bin", "wb") as fh:
        fh.write(b"y")
    assert _mode(tmp_path / "g.bin") == 0o640
    with atomic_path(tmp_path / "h.npy", suffix=".npy") as tmp:
        np.save(tmp, np.arange(3))
    assert _mode(tmp_path / "h.npy") == 0o640


def test_a_failed_block_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_open(path) as fh:
            fh.write("half of the new")
            raise RuntimeError("disk full")
    assert path.read_text() == "old\n"
    assert _leftovers(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path) as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_atomic_path_suffix_suits_libraries_that_pick_the_format_by_name(tmp_path):
    final = tmp_path / "sketch.npz"
    with atomic_path(final, suffix=".npz") as tmp:
        assert tmp.name.endswith(".npz") and tmp.parent == tmp_path and tmp.exists()
        np.savez(tmp, a=np.arange(4))
    with np.load(final) as data:
        assert data["a"].tolist() == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sketch.npz"]


def test_replacing_a_file_while_threads_write_it_never_shows_a_torn_file(tmp_path):
    path = tmp_path / "shared.txt"
    bodies = [str(i) * 50_000 for i in range(8)]
    atomic_write(path, bodies[0])
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(path.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=atomic_write, args=(path, b)) for b in bodies for _ in range(3)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    reader.join()
    assert seen <= set(bodies) and path.read_text() in bodies
    assert _leftovers(tmp_path) == []


def test_only_write_modes_are_accepted(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with atomic_open(tmp_path / "x", "a"):  # type: ignore[call-overload]
            pass
