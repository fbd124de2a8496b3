"""Terminal output shared by the commands: progress bars, summary tables, JSON, error exits."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import typer

from negclean.errors import EXIT_INTERNAL, NegcleanError
from negclean.progress import Advance, count_lines, progress_bar

__all__ = ["count_lines", "emit_json", "fail", "guarded", "print_run_summary", "progress"]


def emit_json(data: Any) -> None:
    # lazy: the API pulls numpy, pydantic and yaml. Standard JSON: a cap of inf is null, never Infinity
    from negclean.api_files import standard_json

    sys.stdout.write(json.dumps(standard_json(data), indent=2, ensure_ascii=False, default=str, allow_nan=False) + "\n")


def fail(exc: NegcleanError, *, as_json: bool) -> None:
    """Print an actionable error (no traceback) and exit with the error's code."""
    if as_json:
        emit_json({"error": type(exc).__name__, "message": str(exc), "exit_code": exc.exit_code})
    else:
        from rich.console import Console
        from rich.text import Text

        # the message as plain text (a "[3]" in it is not markup), never hard-wrapped: a path stays copyable
        Console(stderr=True, soft_wrap=True).print(
            Text.assemble(("error:", "bold red"), " ", str(exc)), highlight=False
        )
    raise typer.Exit(exc.exit_code)


@contextmanager
def guarded(*, as_json: bool) -> Iterator[None]:
    """Turn negclean errors into clean exits; unexpected errors keep their traceback (exit 1)."""
    try:
        yield
    except NegcleanError as exc:
        fail(exc, as_json=as_json)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: stored verdicts are kept; rerun to resume\n")
        raise typer.Exit(130) from None
    except OSError as exc:
        if as_json:
            emit_json({"error": "OSError", "message": str(exc), "exit_code": EXIT_INTERNAL})
        else:
            sys.stderr.write(f"error: {exc}\n")
        raise typer.Exit(EXIT_INTERNAL) from exc


def progress(total: int | None, description: str, *, enabled: bool) -> AbstractContextManager[Advance]:
    """A rich progress bar with rate and ETA (``negclean.progress.progress_bar``); yields ``advance(n)``."""
    return progress_bar(total, description, enabled=enabled)


def print_run_summary(summary: dict) -> None:
    """Read counts, the cascade funnel per stage, false negatives, fix counts, money."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)
    read = summary.get("read", {})
    console.print(
        f"[bold]input[/] {escape(str(summary.get('input')))} ({read.get('format')}): read {read.get('read')}, "
        f"ok {read.get('ok')}, rejected {read.get('rejected')}"
        + (f", warnings {read.get('warnings')}" if read.get("warnings") else "")
    )
    cas = summary.get("cascade")
    if cas:
        from rich import box

        t = Table(
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
            pad_edge=False,
            title="cascade funnel" + (" (dry run: estimates)" if cas.get("dry_run") else ""),
            caption="in: candidates reaching the stage; store: answered from the judgment store; "
            "rel b/w: relevant, better/worse than the positive; on: sent to the next stage",
        )
        for col in ("stage", "in", "store", "judged", "rel b/w", "not", "undec", "on", "tokens", "$", "sec"):
            t.add_column(col, justify="left" if col == "stage" else "right", no_wrap=True)
        for s in cas["stages"]:
            money = s["est_cost"] if cas.get("dry_run") else s["cost"]
            tokens = (
                (s["est_tokens_in"] + s["est_tokens_out"]) if cas.get("dry_run") else (s["tokens_in"] + s["tokens_out"])
            )
            t.add_row(
                s["name"],
                str(s["candidates"]),
                str(s["from_store"]),
                str(s["judged"]),
                f"{s['relevant']} {s['better']}/{s['worse']}",
                str(s["not_relevant"]),
                str(s["undecided"]),
                str(s["escalated"]),
                f"{tokens:,}",
                f"{money:.4f}",
                f"{s['seconds']:.1f}",
            )
        console.print(t)
        console.print("judges: " + ", ".join(f"{s['name']}={s['judge_id']}" for s in cas["stages"]), highlight=False)
        for s in cas["stages"]:
            b = s.get("backend") or {}
            if b.get("requests"):
                errors = ", ".join(f"{n} {k}" for k, n in sorted(b.get("errors", {}).items()))
                console.print(
                    f"calls at {s['name']}: {b.get('calls', 0)} calls, {b['requests']} requests "
                    f"({b.get('retries', 0)} retries), {b.get('failed', 0)} failed after retries"
                    + (f"; errors: {errors}" if errors else ""),
                    highlight=False,
                )
            if s.get("miss_estimate"):
                console.print("audit: " + s["miss_estimate"]["text"])
            if s.get("set_aside"):
                fired = sorted(s.get("set_aside_rules", {}).items(), key=lambda kv: -kv[1])
                console.print(
                    f"set aside at {s['name']}: {s['set_aside']} candidate(s) not sent to the model, "
                    f"possible prompt injection ({', '.join(f'{r} {n}' for r, n in fired)}); they stay "
                    "undecided",
                    highlight=False,
                )
            if s.get("undecided_reasons"):
                top = sorted(s["undecided_reasons"].items(), key=lambda kv: -kv[1])[:3]
                console.print(f"undecided at {s['name']}: " + "; ".join(f"{n}x {escape(r)}" for r, n in top))
        console.print(
            f"[bold]false negatives[/] {cas['false_negatives']} in {cas['instances_with_fn']} of "
            f"{cas['instances']} instances ({cas['candidates']} candidates); ambiguous (over cap) "
            f"{cas['ambiguous']}; undecided at the end {cas['undecided_final']}; cost ${cas['cost']:.4f}"
        )
    fix = summary.get("fix")
    if fix:
        console.print(
            f"[bold]fix[/] {fix.get('operation')}: wrote {fix['written']} -> {escape(str(fix.get('output')))}; "
            f"removed {fix['dropped_removed']}, dropped ambiguous {fix['dropped_ambiguous']}, "
            f"changed {fix['changed']}, relabeled {fix['relabeled']}, negatives removed "
            f"{fix['negatives_removed']}, undecided kept {fix['undecided_kept']}"
        )
    if "reconciled" in summary:
        ok = summary["reconciled"]
        console.print(
            ("[green]" if ok else "[red]") + f"counts reconcile: {ok}[/] "
            "(read = written + removed + ambiguous + rejected)"
        )
    if summary.get("stopped"):
        console.print(f"[yellow]stopped:[/] {escape(str(summary['stopped']))}")
