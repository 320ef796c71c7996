#!/usr/bin/env python3
"""Step 3 of ./scripts/demo: upload a journal to a local emulator and show the server's view.

Starts the emulator (a real HTTP server on 127.0.0.1), runs the real ``comet-upload`` command
against it, runs it a second time to show that nothing is sent twice, then prints what the
server holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from comet_journal.emulator.server import Emulator

API_KEY = "demo-api-key"


def main(journal: str) -> int:
    comet_upload = os.path.join(os.path.dirname(sys.executable), "comet-upload")
    with tempfile.TemporaryDirectory() as tmp, \
            Emulator(db_path=os.path.join(tmp, "server.db"), api_key=API_KEY) as emu:
        env = dict(os.environ, COMET_API_KEY=API_KEY)
        print(f"\n== 3. upload it: comet-upload --url {emu.url} {journal}")
        first = subprocess.run([comet_upload, "--url", emu.url, journal], env=env)
        print("\n== 4. upload it again (resumable, exactly once: nothing is re-sent)")
        second = subprocess.run([comet_upload, "--url", emu.url, journal], env=env)
        state = emu.state()
    print("\n== 5. what the server holds (the emulator's state)")
    print(f"requests received: {state['requests']['total']} (write requests applied: "
          f"{len(state['applied'])}; metrics, parameters and output lines go in batches), "
          f"repeated Idempotency-Keys: {state['idempotency_replays']}")
    for key, exp in state["experiments"].items():
        _print_experiment(key, exp)
    return first.returncode or second.returncode


def _print_experiment(key: str, exp: dict) -> None:
    metrics = exp.get("metrics") or {}
    points = sum(len(v) if isinstance(v, list) else 1 for v in
                 (metrics.values() if isinstance(metrics, dict) else [metrics]))
    print(f"experiment {key}: {exp.get('workspace')}/{exp.get('project')} "
          f"name={exp.get('name')!r}")
    print(f"  metric points: {points}   parameters: {len(exp.get('parameters') or {})}   "
          f"others: {len(exp.get('others') or {})}   tags: {exp.get('tags')}")
    assets = [a.get("fileName") if not a.get("type") else f"{a.get('type')}"
              for a in exp.get("assets") or []]
    ended = "ended" if exp.get("endTimeMillis") else "running"
    print(f"  assets: {assets}   output lines: {len(exp.get('output') or [])}   run: {ended}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "demo.db"))
