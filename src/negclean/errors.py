"""Errors a user can act on, each with a fixed process exit code (documented in docs/cli.md)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_BUDGET = 4
EXIT_BACKEND = 5
EXIT_STORE = 6


class NegcleanError(Exception):
    """Base class: the message says what was wrong, where, and what to do."""

    exit_code = EXIT_INTERNAL


class ConfigError(NegcleanError):
    """A configuration file or option is invalid."""

    exit_code = EXIT_USAGE


class InputError(NegcleanError):
    """An input file or record cannot be read; the message names file and line."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line
        self.reason = message


class BudgetExceeded(NegcleanError):
    """The next model calls would exceed --max-cost; the run stopped cleanly and can be resumed."""

    exit_code = EXIT_BUDGET


class BackendError(NegcleanError):
    """A judge backend could not be reached or is misconfigured."""

    exit_code = EXIT_BACKEND


class StoreError(NegcleanError):
    """The judgment store cannot be used: not a database, another schema, read-only, disk full."""

    exit_code = EXIT_STORE


class MissingDependency(NegcleanError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    exit_code = EXIT_USAGE

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'negclean[{extra}]'"
        )


def require(module: str, *, extra: str, purpose: str):
    """Import an optional module or raise MissingDependency naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependency(module.split(".")[0], extra, purpose) from exc
