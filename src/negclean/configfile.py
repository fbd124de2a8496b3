"""Reading YAML configuration files and reporting invalid ones: the errors name the file and each bad field."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from negclean.errors import ConfigError


def read_yaml(path: Path, *, missing: str) -> Any:
    """The parsed file; ``<path>: <missing>`` when it does not exist, ``<path>: not valid YAML: ...``."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {missing}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def resolve_path(base: Path, value: str) -> str:
    """A path written in a config file: ``~`` and ``$VARS`` expanded, relative to the file's folder ``base``."""
    p = Path(os.path.expandvars(os.path.expanduser(value)))
    return str(p if p.is_absolute() else base / p)


def invalid_config(exc: ValidationError, heading: str, *, root: str = "") -> ConfigError:
    """A ConfigError with ``heading`` and one ``  field.path: message`` line per field pydantic rejected
    (``root`` names an error of the whole mapping)."""
    lines = [heading]
    for err in exc.errors():
        lines.append(f"  {'.'.join(str(x) for x in err['loc']) or root}: {err['msg']}")
    return ConfigError("\n".join(lines))
