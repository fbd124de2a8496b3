"""Fix the data: none / remove / hn_remove / relabel, with provenance and reconciled counts."""

from negclean.fix.operations import FixCounts, Operation, fix_instance, kept_unflagged

__all__ = ["FixCounts", "Operation", "fix_instance", "kept_unflagged"]
