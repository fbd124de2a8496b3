"""The `negclean experiment` file: data, cascade, variants, training and evaluation in one validated value.

Relative paths are relative to the YAML file's folder; ``~`` and ``$VARS`` are expanded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from negclean.configfile import invalid_config, read_yaml, resolve_path
from negclean.errors import ConfigError
from negclean.pipeline import validate_pipeline
from negclean.presets import load_cascade_dict
from negclean.train.config import TrainConfig

VARIANTS = ("default", "remove", "hn_remove", "relabel")


class DataConfig(BaseModel):
    """Where the training instances come from: a file, or a mining run (options of `negclean mine`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str | None = None
    format: str | None = None
    on_error: Literal["fail", "skip"] = "skip"
    mine: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.input is None) == (self.mine is None):
            raise ValueError("give exactly one of 'input' (an instance file) or 'mine' (mining options)")
        return self


class EvalSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=r"^[A-Za-z0-9._-]+$")
    beir: str
    split: str = "test"


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sets: list[EvalSet] = Field(..., min_length=1)
    measures: list[str] = Field(default_factory=lambda: ["nDCG@10", "R@100"])
    base_model: bool = Field(
        True,
        description="also evaluate the untrained model (retriever) or the first "
        "stage alone (reranker: what it re-ranks), as the row 'base'",
    )
    depth: int = Field(100, ge=1)
    first_stage: str = Field("bm25", description="rerankers: bm25, a TREC run file or a bi-encoder")
    top_k: int = Field(100, ge=1)
    batch_size: int = Field(64, ge=1)
    ignore_identical_ids: bool = True
    fill_holes: str | None = Field(
        None,
        description="a cascade (preset or YAML) that judges the unjudged documents "
        "in the systems' top fill_depth (negclean.holes); every set is then also compared "
        "under the filled qrels, as the set '<name>+filled'",
    )
    fill_depth: int = Field(10, ge=1, description="pool depth of fill_holes")


class CompareConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline: str = "default"
    resamples: int = Field(10_000, ge=100)
    confidence: float = Field(0.95, gt=0, lt=1)
    alpha: float = Field(0.05, gt=0, lt=1)


class SourceConfig(BaseModel):
    """A named source of verdicts besides the main cascade; its fix variants are named ``<source>/<variant>``.

    Exactly one of ``cascade`` (a preset name, a YAML file or a cascade mapping) or ``qrels`` (an oracle: a
    qrels judge over known relevance labels, e.g. the dense truth of a benchmark, relevant at ``min_grade``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cascade: dict[str, Any] | None = None
    qrels: str | None = None
    min_grade: int = Field(1, description="qrels: the lowest grade that counts as relevant")
    max_false_negatives: int | None = Field(
        None,
        ge=0,
        description="qrels: instances with more false negatives "
        "are dropped as ambiguous; default none (the truth is not ambiguous)",
    )
    variants: list[str] = Field(default_factory=lambda: ["hn_remove", "relabel"])

    @model_validator(mode="after")
    def _one_judge(self) -> SourceConfig:
        if (self.cascade is None) == (self.qrels is None):
            raise ValueError(
                "give exactly one of 'cascade' (preset name, YAML file or mapping) or 'qrels' "
                "(a qrels file: the oracle)"
            )
        if self.cascade is not None and self.model_fields_set & {"min_grade", "max_false_negatives"}:
            raise ValueError(
                "min_grade and max_false_negatives belong to a 'qrels' source; for a cascade "
                "set max_false_negatives inside the cascade"
            )
        fixes = [v for v in VARIANTS if v != "default"]
        if (
            not self.variants
            or len(set(self.variants)) != len(self.variants)
            or any(v not in fixes for v in self.variants)
        ):
            raise ValueError(
                f"variants: distinct names among {', '.join(fixes)} ('default' is shared by all "
                f"sources); got {self.variants}"
            )
        return self

    def cascade_dict(self) -> dict[str, Any]:
        """The cascade that makes this source's verdicts (for an oracle: one qrels stage)."""
        if self.cascade is not None:
            return self.cascade
        return {
            "stages": [
                {"name": "oracle", "judge": {"backend": "qrels", "path": self.qrels, "min_grade": self.min_grade}}
            ],
            "max_false_negatives": self.max_false_negatives,
        }


class ExperimentConfig(BaseModel):
    """Train the same model with the same seed on each fixed variant of one judged data set; evaluate each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "experiment"
    output_dir: str = "runs/experiment"
    store: str | None = Field(None, description="judgment store; default <output_dir>/judgments.sqlite")
    cache_dir: str | None = Field(None, description="embedding cache (default ~/.cache/negclean/embeddings)")
    seed: int = Field(42, description="training seed of every variant (overrides train.seed)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads for every step")
    data: DataConfig
    cascade: dict[str, Any]
    variants: list[str] = Field(default_factory=lambda: list(VARIANTS))
    sources: dict[str, SourceConfig] = Field(
        default_factory=dict, description="more verdict sources (cascades, oracles), each with its own fix variants"
    )
    drop_undecided: bool = False
    train: TrainConfig = TrainConfig()
    eval: EvalConfig
    compare: CompareConfig = CompareConfig()
    leave_one_out: bool = Field(False, description="also train on all subsets but one, for each subset")

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if v not in VARIANTS]
        if bad or not value or len(set(value)) != len(value):
            raise ValueError(f"variants: distinct names among {', '.join(VARIANTS)}; got {value}")
        return value

    @field_validator("sources")
    @classmethod
    def _source_names(cls, value: dict[str, SourceConfig]) -> dict[str, SourceConfig]:
        import re

        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or name in VARIANTS or name == "base":
                raise ValueError(
                    f"source name {name!r}: letters, digits, '.', '_', '-', and not a variant name or 'base'"
                )
        return value

    def source_variants(self) -> dict[str, tuple[str, str]]:
        """Training-set name -> (source, fix) for every source's variants, in order."""
        return {f"{src}/{v}": (src, v) for src, sc in self.sources.items() for v in sc.variants}

    @model_validator(mode="after")
    def _baseline_known(self) -> ExperimentConfig:
        known = set(self.variants) | set(self.source_variants()) | ({"base"} if self.eval.base_model else set())
        if self.compare.baseline not in known:
            raise ValueError(
                f"compare.baseline {self.compare.baseline!r} is not a variant ({', '.join(sorted(known))})"
            )
        return self

    def train_config(self) -> TrainConfig:
        return self.train.model_copy(update={"seed": self.seed, "threads": self.threads or self.train.threads})


def load_experiment(path: str | Path, *, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read and validate an experiment YAML; errors name the file and each offending field."""
    path = Path(path)
    data = read_yaml(path, missing="no such experiment file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with data, cascade, train and eval")
    base = path.resolve().parent
    data.update(overrides or {})
    for key in ("output_dir", "store", "cache_dir"):
        if isinstance(data.get(key), str):
            data[key] = resolve_path(base, data[key])
    src = data.get("data")
    if isinstance(src, dict):
        if isinstance(src.get("input"), str):
            src["input"] = resolve_path(base, src["input"])
        if isinstance(src.get("mine"), dict):
            for key in ("beir", "input", "corpus", "cache_dir"):
                if isinstance(src["mine"].get(key), str):
                    src["mine"][key] = resolve_path(base, src["mine"][key])
    ev = data.get("eval")
    if isinstance(ev, dict):
        for s in ev.get("sets") or []:
            if isinstance(s, dict) and isinstance(s.get("beir"), str):
                s["beir"] = resolve_path(base, s["beir"])
        fs = ev.get("first_stage")
        if isinstance(fs, str) and fs != "bm25" and (base / fs).exists():
            ev["first_stage"] = resolve_path(base, fs)

    def cascade_ref(ref: str) -> dict:
        return load_cascade_dict(resolve_path(base, ref) if ref.endswith((".yaml", ".yml")) else ref)

    if isinstance(data.get("cascade"), str):
        data["cascade"] = cascade_ref(data["cascade"])
    if isinstance(data.get("sources"), dict):
        sources = {}
        for name, spec in data["sources"].items():
            spec = {"cascade": spec} if isinstance(spec, str) else spec
            if isinstance(spec, dict):
                spec = dict(spec)
                if isinstance(spec.get("cascade"), str):
                    spec["cascade"] = cascade_ref(spec["cascade"])
                if isinstance(spec.get("qrels"), str):
                    spec["qrels"] = resolve_path(base, spec["qrels"])
            sources[name] = spec
        data["sources"] = sources
    return validate_experiment(data, source=str(path))


def validate_experiment(data: dict, *, source: str = "experiment") -> ExperimentConfig:
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise invalid_config(exc, f"{source}: invalid experiment:", root="(file)") from None

    validate_pipeline({"cascade": cfg.cascade}, source=f"{source}: cascade")  # fail early, before any work
    for name, spec in cfg.sources.items():
        if spec.qrels is not None and not Path(spec.qrels).is_file():
            raise ConfigError(
                f"{source}: sources.{name}.qrels: no such file {spec.qrels}; give a TREC or BEIR "
                "qrels file (relative paths are relative to the experiment file)"
            )
        validate_pipeline({"cascade": spec.cascade_dict()}, source=f"{source}: sources.{name}")
    return cfg


__all__ = ["VARIANTS", "ExperimentConfig", "SourceConfig", "load_experiment", "validate_experiment"]
