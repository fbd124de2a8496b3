"""Moved to ``negclean.judge.learned_model`` (the learned judge needs it, and judges come before this package);
the old name still works."""

from negclean.judge.learned_model import (
    DEFAULT_FILE,
    DEFAULT_NAME,
    FORMAT,
    FORMAT_VERSION,
    LearnedModel,
    resolve_model_path,
    sigmoid,
)

__all__ = ["DEFAULT_FILE", "DEFAULT_NAME", "FORMAT", "FORMAT_VERSION", "LearnedModel", "resolve_model_path", "sigmoid"]
