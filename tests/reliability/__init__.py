"""Helpers of the reliability tests (tests/test_reliability_*.py): synthetic data, run folders, child processes."""
