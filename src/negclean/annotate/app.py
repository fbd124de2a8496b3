"""The annotation app's logic, free of HTTP: the sample, the labels in the store, agreement, qrels.

Every label is written to the judgment store (SQLite, WAL) before the request that carries it is
answered, so a closed tab, a killed server or a crash loses nothing that the page showed as saved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from negclean.annotate.sample import AnnotationSet, build_sample
from negclean.cascade.store import JudgmentStore
from negclean.data.atomic import atomic_open
from negclean.errors import ConfigError, InputError
from negclean.metrics.agreement import HUMAN_LABELS, agreement_summary, qrels_lines
from negclean.report.collect import collect
from negclean.report.rundata import RunFolder, open_run

_NAME = re.compile(r"^[\w][\w .@+-]{0,39}$", re.UNICODE)


def check_annotator(name: str) -> str:
    """A trimmed annotator name, or a ValueError saying what a name may contain."""
    name = (name or "").strip()
    if not _NAME.match(name):
        raise ValueError(
            "annotator name: 1-40 characters, letters, digits, space and . @ + - _ (starting with a letter or digit)"
        )
    return name


@dataclass
class AnnotationApp:
    """A run's sample and store, shared by all requests (the store is thread-safe)."""

    run: RunFolder
    sample: AnnotationSet
    store: JudgmentStore
    seed: int
    per_stratum: int

    @classmethod
    def open(
        cls,
        run_dir: str | Path,
        *,
        seed: int = 0,
        per_stratum: int = 25,
        input_path: str | Path | None = None,
        store_path: str | Path | None = None,
    ) -> AnnotationApp:
        """Open a run folder, draw the sample (one pass over the run) and open its store for labels."""
        if per_stratum < 1:
            raise ConfigError("--per-stratum must be at least 1")
        run = open_run(run_dir, input_path=input_path, store_path=store_path, need_store=True)
        store = JudgmentStore(run.store_path)
        labeled = {k for _, k, _ in store.human_labels()}
        sample = build_sample(
            run.outcomes(), stages=run.stage_names, per_stratum=per_stratum, seed=seed, labeled=labeled
        )
        if not sample.items:
            store.close()
            raise InputError("the run has no judged candidates to annotate (a dry run?)", path=str(run.path))
        return cls(run, sample, store, seed, per_stratum)

    def close(self) -> None:
        self.store.close()

    # -- requests -------------------------------------------------------------------------------
    def session(self) -> dict:
        return {
            "run": self.run.path.name,
            "run_dir": str(self.run.path),
            "items": len(self.sample.items),
            "seed": self.seed,
            "per_stratum": self.per_stratum,
            "labels": list(HUMAN_LABELS),
            "annotators": self.annotators(),
        }

    def annotators(self) -> list[str]:
        return sorted({a for a, k, _ in self.store.human_labels() if k in self.sample.pairs})

    def items(self, annotator: str | None) -> dict:
        """The sample as the annotator sees it (no verdicts), with this annotator's labels by item id."""
        labels = {}
        if annotator:
            ids = {it.key: it.id for it in self.sample.items}
            labels = {ids[k]: lab for _, k, lab in self.store.human_labels(check_annotator(annotator)) if k in ids}
        return {"items": [it.public() for it in self.sample.items], "labels": labels}

    def label(self, annotator: str, item_id: str, label: str) -> dict:
        """Store one label now; answers how many of the sample this annotator has labeled."""
        name = check_annotator(annotator)
        if label not in HUMAN_LABELS:
            raise ValueError(f"label must be one of {', '.join(HUMAN_LABELS)}, got {label!r}")
        item = self.sample.item(item_id)
        if item is None:
            raise KeyError(f"no item {item_id!r} in this sample (seed {self.seed}); reload the page")
        self.store.put_human_label(name, item.key, label)
        return {"ok": True, "item": item_id, "label": label, "labeled": self._count(name)}

    def _count(self, annotator: str) -> int:
        keys = {it.key for it in self.sample.items}
        return sum(1 for _, k, _ in self.store.human_labels(annotator) if k in keys)

    def agreement(self) -> dict:
        out = agreement_summary(self.sample.pairs, self.store.human_labels(), self.sample.stages)
        out["strata"] = [
            {"stratum": s, "candidates": n, "sampled": self.sample.sampled[s]} for s, n in self.sample.strata.items()
        ]
        return out

    def qrels(self, annotator: str | None = None) -> str:
        name = check_annotator(annotator) if annotator else None
        lines = qrels_lines(self.sample.pairs, self.store.human_labels(), annotator=name)
        return "".join(line + "\n" for line in lines)


def export_qrels(
    run_dir: str | Path,
    output: str | Path,
    *,
    annotator: str | None = None,
    input_path: str | Path | None = None,
    store_path: str | Path | None = None,
) -> dict:
    """Write the human labels of a run's pairs as TREC qrels (no server, no sample: every labeled pair counts)."""
    run = open_run(run_dir, input_path=input_path, store_path=store_path, need_store=True)
    with JudgmentStore(run.store_path) as store:
        labels = list(store.human_labels())
    name = check_annotator(annotator) if annotator else None
    col = collect(run, scores="none", max_examples=0, labeled={k for _, k, _ in labels})
    lines = qrels_lines(col.pairs, labels, annotator=name)
    with atomic_open(Path(output)) as fh:
        fh.writelines(line + "\n" for line in lines)
    return {
        "qrels": str(output),
        "lines": len(lines),
        "annotator": name or "consensus of all annotators",
        "relevant": sum(1 for line in lines if line.endswith("\t1")),
    }
