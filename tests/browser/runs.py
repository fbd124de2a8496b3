"""Real run folders for the report and annotation tests: the free `screen` cascade (duplicate + MiniLM) on the
10 MS MARCO rows of examples/, made once per test session and copied for tests that write to them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "msmarco_hn_scored.jsonl"
_MADE: dict[str, Path] = {}


def screen_run(base: Path) -> Path:
    """The run folder (made on first use under ``base``); treat it as read-only, see ``copy_run``."""
    if "screen" not in _MADE:
        from negclean.cascade.stages import CascadeConfig
        from negclean.pipeline import FixConfig, run_judge
        from negclean.presets import load_cascade_dict

        out = base / "run_screen"
        run_judge(
            input_path=str(EXAMPLE),
            cascade=CascadeConfig.model_validate(load_cascade_dict("screen")),
            output_dir=out,
            fix=FixConfig(),
        )
        _MADE["screen"] = out
    return _MADE["screen"]


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a run folder whose summary names the copy's own store, so a test can add labels or files."""
    shutil.copytree(run, dest)
    summary_path = dest / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["store"] = str(dest / "judgments.sqlite")
    summary["output_dir"] = str(dest)
    summary_path.write_text(json.dumps(summary, indent=2))
    return dest
