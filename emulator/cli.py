"""``comet-emulator``: run the emulator until SIGINT or SIGTERM.

The first line on stdout is ``listening on http://HOST:PORT`` (scripts and tests wait for it);
logs go to stderr. Exit status 0 after a signal, 1 on an error (a bad fault spec, a port in
use, a database that is not an emulator's).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click

from comet_journal.emulator.errors import FaultSpecError
from comet_journal.emulator.faults import load_spec
from comet_journal.emulator.server import Emulator
from comet_journal.emulator.store import StateFileError


def _faults(spec_text: str | None, latency_ms: float | None, jitter_ms: float) -> dict | None:
    spec = load_spec(spec_text) if spec_text else None
    if latency_ms is None:
        return spec
    spec = {"rules": spec} if isinstance(spec, list) else (spec or {"rules": []})
    spec = {**spec, "rules": [{"route": "*", "kind": "latency", "ms": latency_ms,
                               "jitter_ms": jitter_ms}, *spec.get("rules", [])]}
    return spec


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, type=int,
              help="Port to listen on (0: a free one, printed on the first line).")
@click.option("--db", "db_path", type=click.Path(dir_okay=False),
              help="SQLite state file, kept across restarts (default: a temporary one).")
@click.option("--api-key", default="test-key", show_default=True,
              envvar="COMET_EMULATOR_API_KEY", help="The API key clients must send.")
@click.option("--faults", "faults_spec",
              help="Fault spec: inline JSON or a JSON file (see emulator/README.md).")
@click.option("--latency-ms", type=float,
              help="Delay every request by this much: 50 emulates a 50 ms round trip.")
@click.option("--jitter-ms", type=float, default=0.0, show_default=True,
              help="Vary --latency-ms by up to this much, either way.")
@click.option("--hashes-only", is_flag=True,
              help="Keep uploaded assets' sha256 and size, not their bytes.")
@click.option("--dedupe", is_flag=True,
              help="Answer a repeated Idempotency-Key with the stored response, unapplied.")
@click.option("--no-clientlib", is_flag=True,
              help="Serve only the documented REST endpoints (404 for the SDK's own routes).")
@click.option("-v", "--verbose", count=True, help="Log to stderr (-vv: every request).")
@click.version_option(package_name="comet-journal")
def main(host, port, db_path, api_key, faults_spec, latency_ms, jitter_ms, hashes_only, dedupe,
         no_clientlib, verbose):
    """Run a local Comet-compatible server, with fault injection.

    \b
    Example:
        comet-emulator --port 8080 --db emu.db --latency-ms 25
        COMET_URL_OVERRIDE=http://127.0.0.1:8080/clientlib/ comet upload run.zip
    """
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)],
                        format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        emulator = Emulator(db_path=db_path, api_key=api_key, host=host, port=port,
                            faults=_faults(faults_spec, latency_ms, jitter_ms),
                            store_asset_bytes=not hashes_only, dedupe=dedupe,
                            clientlib=not no_clientlib)
        emulator.start()
    except (FaultSpecError, StateFileError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # the port is taken, the address is not this machine's...
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                                   "(choose another --port, or --port 0 for a free one)") \
            from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"listening on {emulator.url}")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
