"""``comet-upload view`` (a local web viewer of journals) and ``comet-upload export``."""

from __future__ import annotations

import csv
import json
import sys
import threading
import webbrowser

import click

from comet_journal.schema.errors import JournalError
from comet_journal.uploader.cli.options import output_options, setup_logging
from comet_journal.uploader.journal.read import METRIC_COLUMNS, RunIndex
from comet_journal.uploader.viewer.server import Viewer, is_loopback, make_server, new_token, url_of


def _index_or_exit(paths: tuple[str, ...]) -> RunIndex:
    index = RunIndex(list(paths))
    for path, problem in index.problems.items():
        click.echo(f"comet-upload: skipping {path}: {problem}", err=True)
    if not index.keys():
        click.echo(f"comet-upload: no runs found in {', '.join(paths)}\n  hint: give journal "
                   "files or directories holding them (*.db)", err=True)
        sys.exit(2)
    return index


@click.command("view")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Any non-loopback address requires the printed token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="0 picks a free port.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")
@output_options()
def view_command(paths, host, port, open_browser, as_json, quiet, verbose) -> None:
    """Serve a local, read-only web page over the journals at PATHS (files or directories)."""
    setup_logging(verbose, quiet)
    index = _index_or_exit(paths)
    viewer = Viewer(index, None if is_loopback(host) else new_token())
    try:
        server = make_server(viewer, host, port)
    except OSError as exc:
        click.echo(f"comet-upload: cannot listen on {host}:{port}: {exc.strerror or exc}\n"
                   "  hint: another --port, or --port 0 for a free one", err=True)
        sys.exit(2)
    url = url_of(server, host, viewer.token)
    click.echo(json.dumps({"listening": url}) if as_json else f"listening on {url}")
    sys.stdout.flush()
    threading.Thread(target=viewer.warm, name="view-warm", daemon=True).start()
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@click.command("export")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv",
              show_default=True)
@click.option("--what", type=click.Choice(["metrics", "params", "output"]), default="metrics",
              show_default=True)
@click.option("-o", "--output", "out", type=click.File("w", encoding="utf-8"), default="-",
              help="File to write (default: stdout).")
@output_options()
def export_command(paths, fmt, what, out, as_json, quiet, verbose) -> None:
    """Write every metric point, parameter or output line of the runs at PATHS (no sampling).
    --json is --format jsonl (one JSON object per row)."""
    setup_logging(verbose, quiet)
    fmt = "jsonl" if as_json else fmt
    index = _index_or_exit(paths)
    columns = {"metrics": ("run",) + METRIC_COLUMNS,
               "params": ("run", "name", "value"),
               "output": ("run", "seq", "ts", "stderr", "text")}[what]
    writer = csv.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(columns)
    try:
        for key in index.keys():
            for row in _rows(index, key, what):
                if writer:
                    writer.writerow(row)
                else:
                    out.write(json.dumps(dict(zip(columns, row)), default=str) + "\n")
    except JournalError as exc:
        click.echo(f"comet-upload: {exc}", err=True)
        sys.exit(1)


def _rows(index: RunIndex, key: str, what: str):
    if what == "metrics":
        for point in index.metric_rows(key):
            yield (key, *point)
    elif what == "params":
        for name, value in index.params(key).items():
            yield key, name, json.dumps(value) if isinstance(value, (list, dict)) else value
    else:
        for line in index.output(key, limit=sys.maxsize):
            yield key, line["seq"], line["ts"], int(line["stderr"]), line["text"]
