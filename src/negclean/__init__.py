"""negclean: find and fix false negatives in retriever and reranker training data.

The Python API (``negclean.judge``, ``fix``, ``mine``, ``evaluate``, ``read``, ``write``; for files too big for
memory ``judge_file``, ``fix_file``, ``run`` and ``convert_file``) is documented in ``negclean.api``; it loads on first use.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The API loads on first use, so that `import negclean` (and the CLI's start) stays fast: no pydantic models and
# no torch until a function is called.
__all__ = [
    "__version__",
    "judge",
    "fix",
    "mine",
    "evaluate",
    "read",
    "write",
    "JudgeResult",
    "FixReport",
    "Fixed",
    "MineResult",
    "StageFunnel",
    "judge_file",
    "fix_file",
    "run",
    "RunSummary",
    "convert_file",
    "ConvertReport",
]
_API = frozenset(__all__) - {"__version__"}
# judge, fix, mine and evaluate are also subpackages. Importing a subpackage sets the package attribute of that
# name to the module, so the functions are served by the module's class, which wins over that attribute; the
# subpackages stay importable as before (`from negclean.judge import base`, `import negclean.judge.base as b`).
_SHADOWED = frozenset({"judge", "fix", "mine", "evaluate"})

if TYPE_CHECKING:
    from negclean.api import (
        ConvertReport,
        Fixed,
        FixReport,
        JudgeResult,
        MineResult,
        RunSummary,
        StageFunnel,
        convert_file,
        evaluate,
        fix,
        fix_file,
        judge,
        judge_file,
        mine,
        read,
        run,
        write,
    )


def __getattr__(name: str) -> Any:
    if name in _API:
        from negclean import api

        return getattr(api, name)
    raise AttributeError(f"module 'negclean' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


class _Package(types.ModuleType):
    def __getattribute__(self, name: str) -> Any:
        if name in _SHADOWED:
            from negclean import api

            return getattr(api, name)
        return super().__getattribute__(name)


sys.modules[__name__].__class__ = _Package
