"""Option handling shared by the commands: a checked choice among fixed strings, and the ``--cascade`` option.

Typer options arrive as plain ``str``; the library functions take ``Literal`` types. ``one_of`` checks the value
and hands it back with the narrow type, so a bad value is a usage error (exit 2) that names the option.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, TypeVar

from negclean.errors import ConfigError

if TYPE_CHECKING:
    from negclean.api_files import CascadeConfig

C = TypeVar("C", bound=str)

__all__ = ["ON_ERROR", "OPERATIONS", "cascade_config", "one_of"]

OnError = Literal["fail", "skip"]
# the values of every command's --on-error
ON_ERROR: tuple[OnError, ...] = ("fail", "skip")
OpName = Literal["none", "remove", "hn_remove", "relabel"]
# the values of `negclean fix --op` (negclean.api_files.Operation)
OPERATIONS: tuple[OpName, ...] = ("none", "remove", "hn_remove", "relabel")


def one_of(value: str, choices: Sequence[C], *, option: str) -> C:
    """``value`` as one of ``choices`` (typed as they are), or a ConfigError naming ``option`` and the choices."""
    for choice in choices:
        if value == choice:
            return choice
    raise ConfigError(f"{option} {value!r}: choose one of {', '.join(choices)}")


def cascade_config(cascade: str, max_cost: float | None) -> CascadeConfig:
    """The validated cascade of ``--cascade`` (a preset name or a YAML file), with ``--max-cost`` applied."""
    # lazy: the API pulls numpy, pydantic and yaml, which `negclean --help` must not load
    from negclean.api_files import load_cascade

    return load_cascade(cascade, max_cost=max_cost)
