"""Options of a mining run: one validated, frozen value, recorded in every mined instance."""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from negclean.configfile import invalid_config


def parse_range(value: Any) -> tuple[int, int]:
    """``"10:100"`` (or ``(10, 100)``) -> (10, 100): skip the first 10 ranks, keep ranks 11..100."""
    if isinstance(value, str):
        parts = value.replace("-", ":").split(":")
        if len(parts) != 2:
            raise ValueError(f"range {value!r}: write START:END, e.g. 10:100 (skip the first 10, keep ranks 11-100)")
        try:
            value = (int(parts[0] or 0), int(parts[1]))
        except ValueError:
            raise ValueError(f"range {value!r}: START and END must be whole numbers, e.g. 10:100") from None
    start, end = value
    if start < 0 or end <= start:
        raise ValueError(f"range {start}:{end}: need 0 <= START < END")
    return int(start), int(end)


class MineConfig(BaseModel):
    """Everything that decides which negatives a mining run picks.

    Source: a BEIR folder (``beir`` + ``split``) or an instance file (``input``) whose negatives are
    re-mined from ``corpus`` (a BEIR corpus.jsonl) or, without one, from the pool of all passages in
    the file. Ranks are 1-based ranks in the retriever's list before any filtering, positives included;
    ``rank_range`` (START, END) keeps ranks START+1..END.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: fields that never change which negatives are chosen (left out of ``params_hash``)
    operational: ClassVar[frozenset[str]] = frozenset(
        {
            "beir",
            "input",
            "corpus",
            "fmt",
            "cache_dir",
            "use_cache",
            "batch_size",
            "query_chunk",
            "device",
            "show_progress",
            "max_queries",
        }
    )

    # source
    beir: str | None = Field(None, description="BEIR folder: corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv")
    split: str = "train"
    input: str | None = Field(None, description="instance file whose negatives are (re)mined")
    fmt: str | None = Field(None, description="format of `input` (default: detected)")
    corpus: str | None = Field(None, description="corpus.jsonl[.gz] to mine `input` from (default: its own passages)")
    min_grade: int = Field(1, description="qrels grade at or above which a document is a positive")
    exclude_grade: int = Field(1, description="documents with a qrels grade at or above this are never negatives")
    max_queries: int | None = Field(None, ge=1, description="mine only the first N queries (trials)")

    # retriever
    retriever: Literal["dense", "bm25", "hybrid"] = "dense"
    model: str = "all-MiniLM-L6-v2"
    query_prefix: str = ""
    passage_prefix: str = ""
    include_title: bool = Field(True, description="embed / index 'title text' rather than the text alone")
    index: Literal["flat", "hnsw", "ivf"] = Field(
        "flat", description="flat: exact inner product; hnsw, ivf: approximate"
    )
    hnsw_m: int = Field(32, ge=4)
    ef_search: int = Field(128, ge=1)
    ivf_nlist: int | None = Field(None, ge=1, description="IVF lists (default ~4*sqrt(corpus size))")
    nprobe: int = Field(16, ge=1)
    rrf_k: int = Field(60, ge=1, description="hybrid: reciprocal-rank-fusion constant")
    hybrid_depth: int | None = Field(None, ge=1, description="hybrid: depth of each fused list (default 2*END)")

    # selection
    rank_range: tuple[int, int] = (10, 100)
    num_negatives: int = Field(15, ge=1)
    ratio: float | None = Field(
        0.95,
        gt=0,
        description="drop candidates scoring above ratio x the lowest positive (sign-safe: s_p - (1-ratio)*|s_p|)",
    )
    margin: float | None = Field(None, description="drop candidates scoring above (lowest positive - margin)")
    max_score: float | None = Field(None, description="drop candidates scoring above this")
    min_score: float | None = Field(None, description="drop candidates scoring below this")
    sampling: Literal["top", "random", "simans"] = "top"
    simans_a: float = Field(20.0, gt=0, description="SimANS: p ~ exp(-a (s_neg - s_pos - b)^2)")
    simans_b: float = 0.0
    seed: int = 42
    exclude_duplicates: bool = Field(
        True, description="drop candidates whose normalised text repeats a positive or the query"
    )
    near_threshold: float | None = Field(
        0.9, ge=0.0, le=1.0, description="word-3-gram Jaccard counted as a near duplicate (None: exact only)"
    )
    on_shortfall: Literal["keep", "drop"] = Field(
        "keep",
        description="keep: write queries with fewer negatives; drop: leave them out (both are counted in the summary)",
    )

    # operational
    cache_dir: str | None = Field(None, description="embedding cache (default ~/.cache/negclean/embeddings)")
    use_cache: bool = True
    batch_size: int = Field(64, ge=1)
    query_chunk: int = Field(
        4096,
        ge=1,
        description="queries searched together; bounds memory with the index "
        "(4096 matches FAISS's own query block: smaller chunks cost more CPU)",
    )
    device: str | None = None
    show_progress: bool = False

    @field_validator("rank_range", mode="before")
    @classmethod
    def _range(cls, value: Any) -> tuple[int, int]:
        return parse_range(value)

    @model_validator(mode="after")
    def _source(self) -> MineConfig:
        if (self.beir is None) == (self.input is None):
            raise ValueError("give exactly one source: 'beir' (a BEIR folder) or 'input' (an instance file)")
        if self.corpus is not None and self.input is None:
            raise ValueError("'corpus' goes with 'input'; a BEIR folder brings its own corpus")
        if self.max_score is not None and self.min_score is not None and self.min_score > self.max_score:
            raise ValueError(f"min_score {self.min_score} is above max_score {self.max_score}: nothing could survive")
        return self

    @classmethod
    def from_options(cls, options: dict[str, Any], *, source: str = "mine options") -> MineConfig:
        """Validate a mapping (pipeline YAML, CLI) into a config; errors name each bad field."""
        data = dict(options)
        if "range" in data:
            data["rank_range"] = data.pop("range")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise invalid_config(exc, f"{source}: invalid mining options:", root="(options)") from None

    @property
    def range_text(self) -> str:
        return f"{self.rank_range[0]}:{self.rank_range[1]}"

    def params(self) -> dict[str, Any]:
        """Settings that decide the output, as JSON (recorded in every instance's metadata)."""
        data = self.model_dump(mode="json", exclude=set(self.operational))
        data["rank_range"] = self.range_text
        return data

    def params_hash(self) -> str:
        blob = json.dumps(self.params(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
