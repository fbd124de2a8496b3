"""Ready cascades shipped with the package (`--cascade NAME`); a path to a YAML file works too."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from negclean.configfile import read_yaml
from negclean.errors import ConfigError


def names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).iterdir() if p.name.endswith(".yaml"))


def load_cascade_dict(name_or_path: str) -> dict:
    """A cascade mapping from a preset name or a YAML file (a cascade, or a pipeline with a 'cascade' key)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        data = read_yaml(path, missing=f"no such cascade file (presets: {', '.join(names())})")
    else:
        if name_or_path not in names():
            raise ConfigError(
                f"unknown cascade preset '{name_or_path}': choose one of {', '.join(names())} "
                "or give a path to a YAML file"
            )
        data = yaml.safe_load(resources.files(__package__).joinpath(f"{name_or_path}.yaml").read_text())
    if isinstance(data, dict) and "cascade" in data:
        data = data["cascade"]
    if not isinstance(data, dict) or "stages" not in data:
        raise ConfigError(f"{name_or_path}: expected a mapping with 'stages'")
    return data
