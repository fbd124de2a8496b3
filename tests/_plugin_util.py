"""Install tests/plugins/negclean_testjudge the way pip would make it visible, without pip or a network.

pip's editable install leaves two things: the package importable, and a ``.dist-info`` folder on
``sys.path`` whose ``entry_points.txt`` importlib.metadata reads. ``write_dist_info`` writes that folder from
the package's own pyproject.toml (its entry points, name and version), so the test sees exactly what the
package declares; CI's fresh venv needs nothing installed for it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

PLUGIN_ROOT = Path(__file__).resolve().parent / "plugins" / "negclean_testjudge"


def write_dist_info(target: Path, root: Path = PLUGIN_ROOT) -> Path:
    """Write ``<name>-<version>.dist-info`` (METADATA, entry_points.txt) for the package at ``root`` into
    ``target``; put ``target`` and ``root`` on sys.path (or PYTHONPATH) to have it installed."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    name, version = project["name"], project["version"]
    dist = target / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    lines = []
    for group, entries in project.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines.extend(f"{key} = {value}" for key, value in entries.items())
        lines.append("")
    (dist / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
    return dist
