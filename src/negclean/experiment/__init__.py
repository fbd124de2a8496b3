"""The experiment runner: judge once, make default / remove / hn_remove / relabel variants from the same
verdicts, train the same model on each with the same seed, evaluate, compare with significance tests.

    from negclean.experiment import load_experiment, run_experiment
    result = run_experiment(load_experiment("examples/scifact-experiment.yaml"), log=print)
"""

from __future__ import annotations

from negclean.experiment.config import VARIANTS, ExperimentConfig, load_experiment, validate_experiment
from negclean.experiment.runner import run_experiment as _run

__all__ = ["VARIANTS", "ExperimentConfig", "load_experiment", "run_experiment", "validate_experiment"]


def run_experiment(*args, **kwargs):
    """See ``negclean.experiment.runner.run_experiment``."""

    return _run(*args, **kwargs)
