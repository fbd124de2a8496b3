"""Refusing to write over an input: an output path that names the input file (through a relative path, a symbolic
link or a hard link) would replace the only copy of the data with a half-derived one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from negclean.errors import ConfigError

PathLike = str | os.PathLike[str]


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when both paths name one file: equal once resolved (symbolic links and ``..`` followed, relative
    paths made absolute), or the same inode (a hard link)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.resolve() == pb.resolve():
            return True
        return pa.is_file() and pb.is_file() and os.path.samefile(pa, pb)
    except OSError:  # an unreadable folder on the way: compare the paths as written
        return os.path.abspath(pa) == os.path.abspath(pb)


def refuse_overwrite(input_path: PathLike, outputs: Mapping[str, PathLike | None]) -> None:
    """Raise ConfigError (exit 2) when any output names the input file.

    Args:
        input_path: the file the command reads.
        outputs: what to call each output in the message (e.g. ``"--output"``, ``"the verdicts file"``) -> its
            path; None entries are skipped.
    """
    for label, out in outputs.items():
        if out is not None and same_file(out, input_path):
            raise ConfigError(
                f"{label} {out} is the input file {input_path}: writing it would destroy the only copy of the "
                "input. Write to another path (and rename afterwards if you want to replace the input)."
            )


def refuse_replacing_folder(input_path: PathLike, folder: PathLike, *, label: str) -> None:
    """Raise ConfigError (exit 2) when ``folder``, which the command will replace as a whole, is the input file
    or holds it."""
    source, target = Path(input_path).resolve(), Path(folder).resolve()
    if source == target or target in source.parents:
        raise ConfigError(
            f"{label} {folder} holds the input file {input_path}, and is replaced as a whole when the command "
            "succeeds: that would delete the input. Write to another folder."
        )


__all__ = ["refuse_overwrite", "refuse_replacing_folder", "same_file"]
