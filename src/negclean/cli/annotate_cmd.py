"""`negclean annotate RUN_DIR`: a local web app to label a stratified sample of judged candidates."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from negclean.cli.console import emit_json, guarded
from negclean.errors import ConfigError


def annotate(
    run_dir: Path = typer.Argument(..., help="a run folder (summary.json, verdicts.jsonl, judgments.sqlite)"),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="address to bind; keep the default unless you mean to share the app on a network"
    ),
    port: int = typer.Option(8765, "--port", help="port to listen on (0: any free port)"),
    seed: int = typer.Option(0, "--seed", help="which candidates are sampled, reproducibly"),
    per_stratum: int = typer.Option(
        25, "--per-stratum", help="candidates per stratum (each stage's flagged / cleared / undecided)"
    ),
    input: Path | None = typer.Option(None, "--input", "-i", help="the judged file, if it moved since the run"),
    store: Path | None = typer.Option(None, "--store", help="judgment store for the labels, if not the run's"),
    export: Path | None = typer.Option(
        None, "--export", help="write the labels as TREC qrels to this file and exit (no server)"
    ),
    annotator: str | None = typer.Option(
        None, "--annotator", help="with --export: this annotator's labels (default: consensus)"
    ),
    open_browser: bool = typer.Option(False, "--open", help="open the app in the default browser"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output on stdout"),
):
    """Label judged candidates in the browser (verdicts hidden); see agreement (Cohen's kappa); export qrels."""
    with guarded(as_json=as_json):
        if export is not None:
            from negclean.annotate.app import export_qrels  # lazy: pulls numpy, pydantic, yaml

            try:
                result = export_qrels(run_dir, export, annotator=annotator, input_path=input, store_path=store)
            except ValueError as exc:
                raise ConfigError(f"--annotator: {exc}") from None
            if as_json:
                emit_json(result)
            else:
                typer.echo(
                    f"wrote {result['lines']} qrels lines ({result['relevant']} relevant) to {export} "
                    f"from {result['annotator']}"
                )
            return
        if not 0 <= port <= 65535:
            raise ConfigError(f"--port {port}: choose 0-65535")
        from negclean.annotate.app import AnnotationApp  # lazy: pulls numpy, pydantic, yaml
        from negclean.annotate.server import AnnotationServer

        app = AnnotationApp.open(run_dir, seed=seed, per_stratum=per_stratum, input_path=input, store_path=store)
        try:
            server = AnnotationServer(app, host=host, port=port)
        except OSError as exc:
            app.close()
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port") from None
        info = {
            "url": server.url,
            "items": len(app.sample.items),
            "store": str(app.run.store_path),
            "strata": app.sample.sampled,
        }
        if as_json:
            emit_json(info)
        else:
            strata = ", ".join(f"{k} {v}" for k, v in app.sample.sampled.items())
            typer.echo(
                f"annotating {info['items']} candidates of {run_dir} ({strata})\n"
                f"labels are saved to {info['store']} as you go\n"
                f"open {server.url}  (Ctrl-C to stop)"
            )
        sys.stdout.flush()  # the URL must reach a piped stdout before serving blocks
        if open_browser:
            import webbrowser

            webbrowser.open(server.url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            typer.echo("stopped; every label is saved")
        finally:
            server.server_close()
            app.close()


COMMANDS = {"annotate": annotate}
