"""The learned judge's model (judge layer; fitted by ``negclean.learned.fit``) as plain data: standardisation, logistic coefficients, Platt calibration.

Saved as JSON (no pickle): format version, feature names, means (also used for missing values),
scales, coefficients, intercept, calibration (a, b: p = sigmoid(a * z + b) on the decision value z),
the decision threshold, the scikit-learn version it was fitted with, and training facts. Prediction
needs only numpy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from negclean.data.atomic import atomic_write
from negclean.errors import ConfigError

FORMAT = "negclean-learned-judge"
FORMAT_VERSION = 1
#: ``path: default`` in a learned judge's config: the screen shipped with the package (see README.md here)
DEFAULT_NAME = "default"
DEFAULT_FILE = "default-screen.json"


def resolve_model_path(path: str | Path) -> Path:
    """The file a learned judge's ``path`` names: ``default`` is the packaged default screen, anything else a path."""
    if str(path) == DEFAULT_NAME:
        from importlib import resources

        # package data of negclean.learned (where `negclean fit-judge` and the benchmarks write it); reading a
        # resource imports that package's empty __init__ only, nothing of the layer above
        return Path(str(resources.files("negclean.learned").joinpath(DEFAULT_FILE)))
    return Path(path).expanduser()


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))  # overflow-free


@dataclass(frozen=True)
class LearnedModel:
    """A fitted, calibrated logistic model over named features."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    calib_a: float = 1.0
    calib_b: float = 0.0
    threshold: float = 0.5
    embedder: str = "all-MiniLM-L6-v2"
    sklearn_version: str = ""
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.features)
        if not (len(self.mean) == len(self.scale) == len(self.coef) == n):
            raise ValueError("features, mean, scale and coef must have the same length")

    def decision(self, values: np.ndarray) -> np.ndarray:
        x = np.asarray(values, dtype=np.float64).reshape(-1, len(self.features))
        mean = np.asarray(self.mean)
        x = np.where(np.isnan(x), mean, x)
        out: np.ndarray = ((x - mean) / np.asarray(self.scale)) @ np.asarray(self.coef) + self.intercept
        return out

    def predict_proba(self, values: np.ndarray) -> np.ndarray:
        """Calibrated P(false negative) per row (NaN features take the training mean)."""
        return sigmoid(self.calib_a * self.decision(values) + self.calib_b)

    def columns_from(self, names: Sequence[str], values: np.ndarray) -> np.ndarray:
        """Reorder a feature table's columns to this model's features (by name)."""
        missing = [f for f in self.features if f not in names]
        if missing:
            raise ConfigError(f"the model needs features {missing} that the feature table lacks")
        return np.asarray(values)[:, [list(names).index(f) for f in self.features]]

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}, indent=1)

    def save(self, path: str | Path) -> Path:
        return atomic_write(path, self.to_json())

    @classmethod
    def from_json(cls, text: str, *, source: str = "model") -> LearnedModel:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not JSON ({exc}); expected a file written by `negclean fit-judge`") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{source}: not a negclean learned-judge model (no 'format: {FORMAT}')")
        if data.get("format_version") != FORMAT_VERSION:
            raise ConfigError(
                f"{source}: format version {data.get('format_version')} is not supported "
                f"(this negclean reads {FORMAT_VERSION}); refit with `negclean fit-judge`"
            )
        body = {k: v for k, v in data.items() if k not in ("format", "format_version")}
        for k in ("features", "mean", "scale", "coef"):
            body[k] = tuple(body.get(k) or ())
        try:
            return cls(**body)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: malformed model ({exc})") from None

    @classmethod
    def load(cls, path: str | Path) -> LearnedModel:
        path = resolve_model_path(path)
        if not path.is_file():
            raise ConfigError(
                f"learned judge model not found: {path} (write one with `negclean fit-judge`"
                + (
                    ", or reinstall negclean: the packaged default screen is missing)"
                    if path.name == DEFAULT_FILE
                    else ")"
                )
            )
        return cls.from_json(path.read_text(), source=str(path))


__all__ = ["DEFAULT_FILE", "DEFAULT_NAME", "FORMAT", "FORMAT_VERSION", "LearnedModel", "resolve_model_path", "sigmoid"]
