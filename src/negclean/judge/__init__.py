"""Judges: a protocol (tasks in, one verdict per candidate out) and one backend module each.

Backends are imported only when a configuration names them (see ``negclean.judge.config.build_judge``).
"""

from negclean.judge.base import Judge, JudgeTask, Label, TaskResult, Verdict

__all__ = ["Judge", "JudgeTask", "Label", "TaskResult", "Verdict"]
