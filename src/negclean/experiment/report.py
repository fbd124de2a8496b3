"""results.md of an experiment: what was trained on what, the comparison tables, and where the time went."""

from __future__ import annotations

import platform
from pathlib import Path

from negclean.experiment.config import ExperimentConfig


def _machine() -> str:
    import os

    cores = os.cpu_count()
    threads = "default"
    try:
        import torch

        threads = str(torch.get_num_threads())
    except ImportError:  # pragma: no cover
        pass
    return f"{platform.machine()} {platform.system()}, {cores} CPU cores visible, torch threads {threads}"


def _kept_table(result) -> list[str]:
    """Per eval set, the first measure of every system beside the instances it was trained on: a gain that
    comes from dropping most of the data shows here."""
    lines: list[str] = []
    variants = result.data.get("variants", {})
    for set_name, comp in result.comparisons.items():
        table = comp["tables"][0]
        m = table["measure"]
        lines += [
            f"## {set_name}: {m} and training instances",
            "",
            f"| system | trained on (instances) | {m} | Δ vs {table['baseline']} | p (Holm) |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in table["rows"]:
            kept = variants.get(r["name"], {}).get("written", "untrained" if r["name"] == "base" else "")
            delta = "—" if r["delta"] is None else f"{r['delta']:+.4f}"
            p_h = "—" if r["p_holm"] is None else f"{r['p_holm']:.4f}"
            lines.append(f"| {r['name']} | {kept} | {r['mean']:.4f} | {delta} | {p_h} |")
        lines.append("")
    return lines


def write_markdown(cfg: ExperimentConfig, result, path: str | Path) -> Path:
    """Write the experiment's Markdown summary; returns the path."""
    t = cfg.train_config()
    lines = [f"# {cfg.name}", ""]
    lines.append(
        f"Model `{t.model}` ({t.kind}), {t.epochs} epoch(s), batch {t.batch_size}, lr {t.learning_rate}, "
        f"{t.hard_negatives} hard negatives, max_seq_length {t.max_seq_length or 'model default'}, "
        f"seed {t.seed}. Machine: {_machine()}. Total {result.seconds:.0f} s wall, "
        f"{result.cpu_seconds:.0f} s CPU (this process)."
    )
    lines.append("")
    cascade = result.data.get("cascade") or {}
    if cascade:
        stages = ", ".join(f"{s['name']} ({s['judge_id']})" for s in cascade.get("stages", []))
        lines.append(
            f"Cascade: {stages}. False negatives: {cascade.get('false_negatives')} in "
            f"{cascade.get('instances_with_fn')} of {cascade.get('instances')} instances "
            f"({cascade.get('candidates')} negatives judged); ambiguous (over the cap): "
            f"{cascade.get('ambiguous')}."
        )
        lines.append("")
    for source, summary in (result.data.get("sources") or {}).items():
        summary = summary or {}
        lines.append(
            f"Source `{source}`: {summary.get('false_negatives')} false negatives in "
            f"{summary.get('instances_with_fn')} of {summary.get('instances')} instances; ambiguous "
            f"(over its cap): {summary.get('ambiguous')}."
        )
        lines.append("")
    lines += _kept_table(result)
    lines += [
        "## Training data",
        "",
        "| training set | instances | dropped (remove) | dropped (ambiguous) | changed | relabeled | "
        "negatives removed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, info in result.data.get("variants", {}).items():
        lines.append(
            f"| {name} | {info.get('written', '')} | {info.get('dropped_removed', '')} | "
            f"{info.get('dropped_ambiguous', '')} | {info.get('changed', '')} | {info.get('relabeled', '')} | "
            f"{info.get('negatives_removed', '')} |"
        )
    lines.append("")
    for set_name, md in result.files.items():
        if set_name.endswith(".md"):
            lines += [
                f"## {set_name[:-3]}",
                "",
                Path(md).read_text(encoding="utf-8").strip(),
                "",
                f"![{set_name[:-3]}](results/{set_name[:-3]}.png)",
                "",
            ]
    lines += ["## Steps", "", "| step | wall s | CPU s | reused | detail |", "|---|---:|---:|---|---|"]
    for s in result.steps:
        lines.append(f"| {s.name} | {s.seconds:.1f} | {s.cpu_seconds:.1f} | {'yes' if s.reused else ''} | {s.detail} |")
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


__all__ = ["write_markdown"]
