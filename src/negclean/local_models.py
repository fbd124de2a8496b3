"""Local models that negclean trains and runs: the training summary kept in a model folder, the text a model
sees of a passage, and a limit on torch's CPU threads.

Training writes these, and the cross-encoder judge, evaluation and the experiment runner read them; they sit
here, below all of those, so that judging and evaluating never import the training package.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from negclean.data.records import Passage

#: the training summary ``negclean train`` saves in the model folder
SUMMARY_FILE = "negclean_train.json"


def read_summary(model_dir: str | Path) -> dict[str, Any] | None:
    """The training summary saved with a model, or None for a model negclean did not train."""
    path = Path(model_dir) / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def passage_text(p: Passage, *, include_title: bool = True, prefix: str = "") -> str:
    """What a model sees of a passage: ``prefix + "title text"`` (BEIR convention) or the text alone."""
    body = f"{p.title} {p.text}" if include_title and p.title else p.text
    return prefix + body


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Limit torch's CPU threads for a block, then restore them. On a machine shared with other work,
    1 thread can be several times faster than 2 (the thread pool spins while it waits for a core)."""
    if threads is None:
        yield
        return
    import torch  # heavy and optional: only when a limit is asked for

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


__all__ = ["SUMMARY_FILE", "passage_text", "read_summary", "torch_threads"]
