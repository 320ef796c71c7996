#!/usr/bin/env python3
"""Every figure of the README's performance section in one run, on one machine, side by side
with the official tools where they are installed.

1. Recording (``scripts/bench_recorder.py``): the recorder against
   ``comet_ml.OfflineExperiment`` on ``log_metric(name, value, step=i)``: caller-side
   calls/s, paced latency, durable rows/s, bytes per point, burst memory.
2. Uploading the same run (this script): one workload (``--names`` metrics x ``--steps``
   steps, plus parameters, others and tags) recorded both ways, then ``comet upload`` of the
   official offline archive against ``comet-upload --batch`` of the journal, each against a
   fresh emulator process: wall time, HTTP requests, and how many of the logged metric
   points reached the server (``comet upload`` samples each metric down to 15,000 points).
3. comet-upload alone (``scripts/bench_upload.py``): per-call replay against a bare loop,
   50 ms latency with ``--concurrency 32``, ``--batch`` points/s, peak RSS of a large upload.

Ratios are printed; raw figures go to ``bench-results/all.json``; a chart goes to
``docs/benchmarks.png`` when matplotlib is installed (``pip install -e .[bench]``); without
it the figures are still printed and saved.

    .venv/bin/python scripts/bench_all.py            # full run (~4-5 min on 2 cores)
    .venv/bin/python scripts/bench_all.py --quick    # smaller sizes, a smoke test (~1 min)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
KEY = "bench-all-key"
SAMPLING = 15_000  # comet upload keeps at most this many points per metric name


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env["PYTHONPATH"] = ROOT
    env["COMET_JOURNAL_AUTO_LOG"] = "0"  # the recorder: only the workload's calls
    return env


# --- 1 and 3: the existing benchmarks, as subprocesses ------------------------------------------

def run_recorder_bench(quick: bool, tmp: str) -> dict:
    out = os.path.join(tmp, "recorder.json")
    cmd = [sys.executable, os.path.join(SCRIPTS, "bench_recorder.py"), "--out", out]
    if quick:
        cmd.append("--quick")
    print(f"\n== recording: {' '.join(os.path.basename(c) for c in cmd[1:2])}"
          f"{' --quick' if quick else ''} ==", flush=True)
    subprocess.run(cmd, cwd=ROOT, env=_env(), check=True)
    with open(out) as fh:
        return json.load(fh)


def run_upload_bench(quick: bool) -> dict:
    cmd = [sys.executable, os.path.join(SCRIPTS, "bench_upload.py")]
    if quick:
        cmd += ["--calls", "1500", "--latency-calls", "800", "--batch-calls", "60000",
                "--rss-calls", "150000"]
    print(f"\n== comet-upload alone: bench_upload.py {' '.join(cmd[2:])} ==", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                          check=True)
    lines = proc.stdout.strip().splitlines()
    print("\n".join(lines[:-1]), flush=True)
    return json.loads(lines[-1])


# --- 2: the same run uploaded both ways -----------------------------------------------------------

class Emulator:
    """``comet-emulator`` in its own process, with its state in ``db``."""

    def __init__(self, db: str):
        self.db = db
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "comet_journal.emulator.cli", "--api-key", KEY, "--hashes-only", "--db",
             db], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the emulator did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1]

    def points(self, key: str, names: list[str]) -> dict[str, int]:
        """Metric points the server holds for ``key``, per name (the REST v2 read API)."""
        import requests
        out = {}
        with requests.Session() as s:
            s.headers["Authorization"] = KEY
            for name in names:
                r = s.get(self.url + "/api/rest/v2/experiment/metrics/get-metric",
                          params={"experimentKey": key, "metricName": name}, timeout=120)
                out[name] = len(r.json().get("metrics") or []) if r.status_code == 200 else 0
        return out

    def stop(self) -> int:
        """Stop it; return the HTTP requests it served (saved in its database on exit)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        conn = sqlite3.connect(self.db)
        try:
            row = conn.execute("SELECT value FROM counters WHERE name='requests.total'"
                               ).fetchone()
        finally:
            conn.close()
        return int(row[0]) if row else 0


def _workload(exp, names: list[str], steps: int) -> None:
    """The run both tools record: the same calls, in the same order."""
    exp.log_parameters({f"param_{i}": i * 0.5 for i in range(20)})
    exp.log_others({f"other_{i}": f"value {i}" for i in range(10)})
    exp.add_tags(["bench", "side-by-side"])
    log = exp.log_metric
    for step in range(steps):
        for j, name in enumerate(names):
            log(name, 1.0 / (step + 1 + j), step=step)


def record_ours(tmp: str, names: list[str], steps: int) -> tuple[str, float]:
    from comet_journal import Experiment
    path = os.path.join(tmp, "side-by-side.db")
    started = time.perf_counter()
    with Experiment(journal=path, project_name="bench", workspace="ws",
                    experiment_name="side-by-side") as exp:
        _workload(exp, names, steps)
    return path, time.perf_counter() - started


def official_available() -> str | None:
    """The ``comet`` command next to this Python, if comet_ml is installed."""
    try:
        import comet_ml  # noqa: F401
    except ImportError:
        return None
    comet = os.path.join(os.path.dirname(sys.executable), "comet")
    return comet if os.path.exists(comet) else shutil.which("comet")


def record_official(tmp: str, names: list[str], steps: int) -> tuple[str, str, float]:
    import logging
    os.environ.setdefault("COMET_LOGGING_CONSOLE", "ERROR")
    logging.getLogger("comet_ml").setLevel(logging.ERROR)
    from comet_ml import OfflineExperiment
    directory = os.path.join(tmp, "offline")
    os.makedirs(directory, exist_ok=True)
    started = time.perf_counter()
    from bench_recorder import QUIET_OFFLINE_OPTIONS  # nothing captured automatically
    exp = OfflineExperiment(offline_directory=directory, project_name="bench", workspace="ws",
                            **QUIET_OFFLINE_OPTIONS)
    exp.set_name("side-by-side")
    _workload(exp, names, steps)
    exp.end()
    elapsed = time.perf_counter() - started
    archive = os.path.join(directory, f"{exp.get_key()}.zip")
    if not os.path.exists(archive):
        raise RuntimeError(f"OfflineExperiment wrote no archive {archive}: "
                           f"{os.listdir(directory)}")
    return archive, exp.get_key(), elapsed


def upload_official(comet: str, archive: str, key: str, names: list[str], tmp: str) -> dict:
    emu = Emulator(os.path.join(tmp, "emu-official.db"))
    env = _env()
    env.update(COMET_API_KEY=KEY, COMET_URL_OVERRIDE=emu.url + "/clientlib/",
               COMET_LOGGING_CONSOLE="INFO", COMET_CONFIG=os.path.join(tmp, "no.config"))
    try:
        started = time.perf_counter()
        proc = subprocess.run([comet, "upload", archive], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - started
        points = emu.points(key, names)
    finally:
        requests_total = emu.stop()
    return {"tool": "comet upload", "exit_code": proc.returncode, "wall_s": wall,
            "requests": requests_total, "points_delivered": points,
            "said_done": "Done!" in proc.stdout + proc.stderr}


def upload_ours(journal: str, names: list[str], tmp: str, *flags: str) -> dict:
    emu = Emulator(os.path.join(tmp, f"emu-ours{'-'.join(flags)}.db"))
    try:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "comet_journal.uploader.cli", "--url", emu.url,
                               "--api-key", KEY, "--json", "--deadline", "120", *flags,
                               journal], cwd=ROOT, env=_env(), capture_output=True,
                              text=True, timeout=900)
        wall = time.perf_counter() - started
        summary = json.loads(proc.stdout)["journals"][0] if proc.stdout.strip() else {}
        key = (summary.get("experiments") or [{}])[0].get("server_key")
        points = emu.points(key, names) if key else {n: 0 for n in names}
    finally:
        requests_total = emu.stop()
    return {"tool": "comet-upload " + " ".join(flags), "exit_code": proc.returncode,
            "wall_s": wall, "requests": requests_total, "points_delivered": points,
            "calls_uploaded": summary.get("uploaded"), "error": summary.get("error")
            or (proc.stderr.strip()[-500:] if proc.returncode else None)}


def side_by_side(tmp: str, names: list[str], steps: int) -> dict:
    logged = steps * len(names)
    print(f"\n== the same run uploaded both ways: {len(names)} metrics x {steps:,} steps "
          f"= {logged:,} points, plus 20 parameters, 10 others, 2 tags ==", flush=True)
    journal, ours_record_s = record_ours(tmp, names, steps)
    result: dict = {"names": names, "steps": steps, "points_logged": logged,
                    "record_s": {"recorder": ours_record_s},
                    "bytes_on_disk": {"recorder": os.path.getsize(journal)}}
    result["ours"] = upload_ours(journal, names, tmp, "--batch")
    print(f"  comet-upload --batch: {result['ours']['wall_s']:.1f} s, "
          f"{result['ours']['requests']:,} requests, "
          f"{sum(result['ours']['points_delivered'].values()):,}/{logged:,} points", flush=True)
    comet = official_available()
    if comet is None:
        print("  comet_ml is not installed: no official side", flush=True)
        result["official"] = None
        return result
    archive, key, official_record_s = record_official(tmp, names, steps)
    result["record_s"]["OfflineExperiment"] = official_record_s
    result["bytes_on_disk"]["OfflineExperiment"] = os.path.getsize(archive)
    result["official"] = upload_official(comet, archive, key, names, tmp)
    o = result["official"]
    print(f"  comet upload:         {o['wall_s']:.1f} s, {o['requests']:,} requests, "
          f"{sum(o['points_delivered'].values()):,}/{logged:,} points"
          f" (exit {o['exit_code']})", flush=True)
    return result


# --- the report --------------------------------------------------------------------------------

def _fmt(value, fmt="{:,.0f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def table_rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(figure, comet-journal, official, ratio) rows, README order."""
    rows = []
    rec = results.get("recorder") or {}
    ours, theirs = rec.get("recorder") or {}, rec.get("official") or {}

    def row(label, a, b, fmt="{:,.0f}", higher_better=True, unit=""):
        ratio = ""
        if a and b:
            r = (a / b) if higher_better else (b / a)
            ratio = f"{r:,.1f}x" + (unit and f" {unit}")
        rows.append((label, _fmt(a, fmt), _fmt(b, fmt), ratio))

    if ours:
        lat, olat = ours.get("latency", {}), theirs.get("latency", {})
        row("recording: caller-side calls/s", ours.get("caller_calls_per_s"),
            theirs.get("caller_calls_per_s"))
        row("recording: paced latency p50 (us)", lat.get("p50_us"), olat.get("p50_us"),
            "{:.1f}", False)
        row("recording: paced latency p99 (us)", lat.get("p99_us"), olat.get("p99_us"),
            "{:.1f}", False)
        row("recording: paced latency max (us)", lat.get("max_us"), olat.get("max_us"),
            "{:.0f}", False)
        row("recording: durable rows/s", ours.get("rows_per_s"), theirs.get("rows_per_s"))
        row("recording: bytes on disk per point", ours.get("bytes_per_point"),
            theirs.get("bytes_per_point"), "{:.0f}", False, "smaller")
        burst = ours.get("burst") or {}
        if burst:
            rows.append((f"recording: burst of {burst['calls']:,} calls, peak RSS growth (MB)",
                         f"{burst['peak_rss_growth_mb']:.0f} ({burst['lost']} lost)", "", ""))
    sbs = results.get("side_by_side")
    if sbs:
        o, u = sbs.get("official") or {}, sbs["ours"]
        logged = sbs["points_logged"]
        row("same run: record, log loop + flush/end (s)", sbs["record_s"].get("recorder"),
            sbs["record_s"].get("OfflineExperiment"), "{:.1f}", False, "faster")
        row("same run: bytes on disk", sbs["bytes_on_disk"].get("recorder"),
            sbs["bytes_on_disk"].get("OfflineExperiment"), "{:,.0f}", False, "smaller")
        row("same run: upload wall time (s)", u["wall_s"], o.get("wall_s"), "{:.1f}", False,
            "faster")
        rows.append(("same run: upload HTTP requests", f"{u['requests']:,}",
                     _fmt(o.get("requests")), ""))
        ud = sum(u["points_delivered"].values())
        od = sum(o["points_delivered"].values()) if o else None
        rows.append((f"same run: metric points on the server (of {logged:,})",
                     f"{ud:,} ({100 * ud / logged:.0f}%)",
                     f"{od:,} ({100 * od / logged:.0f}%)" if od is not None else "n/a",
                     f"{ud / od:.1f}x more" if od else ""))
        if o and od:
            row("same run: points delivered per second", ud / u["wall_s"], od / o["wall_s"])
    up = results.get("upload") or {}
    if up.get("per_call"):
        p = up["per_call"]
        rows.append(("comet-upload: per-call replay vs bare loop (req/s)",
                     f"{p['replay_calls_s']:,}", f"bare loop {p['bare_loop_req_s']:,}",
                     f"{p['ratio']:.2f} (target >= {p['target_ratio']})"))
    if up.get("latency_50ms_c32"):
        q = up["latency_50ms_c32"]
        rows.append(("comet-upload: 50 ms latency, --concurrency 32 (calls/s)",
                     f"{q['calls_s']:,}", "", f"target >= {q['target']}"))
    if up.get("batch"):
        b = up["batch"]
        rows.append(("comet-upload: --batch (metric points/s)", f"{b['points_s']:,}", "",
                     f"target >= {b['target']:,}"))
    if up.get("peak_rss"):
        r = up["peak_rss"]
        rows.append((f"comet-upload: peak RSS, --batch upload of {r['calls']:,} calls (MB)",
                     f"{r['peak_rss_mb']}", "", f"target < {r['target_mb']}"))
    return rows


def print_table(rows) -> None:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows + [("", "comet-journal", "", "")])
    w2 = max(len(r[2]) for r in rows + [("", "", "official", "")])
    print(f"\n{'figure':<{w0}}  {'comet-journal':>{w1}}  {'official':>{w2}}  ratio")
    for label, a, b, ratio in rows:
        print(f"{label:<{w0}}  {a:>{w1}}  {b:>{w2}}  {ratio}")


def markdown_table(rows) -> str:
    lines = ["| figure | comet-journal | official 3.58.8 | ratio |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def chart(results: dict, path: str) -> bool:
    """A 2x2 PNG of the headline figures; False (and a note) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e .[bench]): no chart", flush=True)
        return False
    ours_c, theirs_c = "#2a7ab0", "#c8553d"
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    rec = results.get("recorder") or {}
    ours, theirs = rec.get("recorder") or {}, rec.get("official") or {}

    def bars(ax, labels, a, b, title, log=False, fmt="{:,.0f}", names=("comet-journal",
                                                                       "official")):
        import numpy as np
        x = np.arange(len(labels))
        w = 0.38
        for off, values, color, name in ((-w / 2, a, ours_c, names[0]),
                                         (w / 2, b, theirs_c, names[1])):
            vals = [v or 0 for v in values]
            rects = ax.bar(x + off, vals, w, color=color, label=name)
            for rect, v in zip(rects, values):
                if v:
                    ax.annotate(fmt.format(v), (rect.get_x() + rect.get_width() / 2,
                                                rect.get_height()),
                                ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, labels)
        ax.set_title(title, fontsize=11)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)

    if ours:
        bars(axes[0][0], ["caller-side calls/s", "durable rows/s"],
             [ours.get("caller_calls_per_s"), ours.get("rows_per_s")],
             [theirs.get("caller_calls_per_s"), theirs.get("rows_per_s")],
             "Recording log_metric(step=i): throughput (log scale)", log=True,
             names=("recorder", "OfflineExperiment"))
        lat, olat = ours.get("latency", {}), theirs.get("latency", {})
        bars(axes[0][1], ["p50", "p99", "max"],
             [lat.get("p50_us"), lat.get("p99_us"), lat.get("max_us")],
             [olat.get("p50_us"), olat.get("p99_us"), olat.get("max_us")],
             "Recording: one call's latency in us, paced (log scale, lower is better)",
             log=True, fmt="{:,.1f}", names=("recorder", "OfflineExperiment"))
    sbs = results.get("side_by_side")
    if sbs:
        o, u = sbs.get("official") or {}, sbs["ours"]
        rec_s = sbs["record_s"]
        requests_label = (f"upload (s)\n{u['requests']:,} vs {o['requests']:,} HTTP requests"
                          if o else f"upload (s)\n{u['requests']:,} HTTP requests")
        bars(axes[1][0], ["record: log loop + end (s)", requests_label],
             [rec_s.get("recorder"), u["wall_s"]],
             [rec_s.get("OfflineExperiment"), o.get("wall_s")],
             "The same run, recorded then uploaded: seconds (lower is better)",
             fmt="{:,.1f}", names=("comet-journal (comet-upload --batch)",
                                   "comet_ml (OfflineExperiment, comet upload)"))
        logged = sbs["points_logged"]
        names = sbs["names"]
        bars(axes[1][1], [*names, "all"],
             [*(u["points_delivered"][n] for n in names), sum(u["points_delivered"].values())],
             [*(o["points_delivered"][n] for n in names),
              sum(o["points_delivered"].values())] if o else [None] * (len(names) + 1),
             f"Metric points on the server, of {logged:,} logged", fmt="{:,.0f}",
             names=("comet-upload --batch", "comet upload"))
        axes[1][1].axhline(sbs["steps"], color="grey", lw=0.8, ls="--",
                           label="logged per name")
        axes[1][1].legend(fontsize=8)
    machine = results.get("machine", {})
    fig.suptitle(f"comet-journal vs comet_ml {machine.get('comet_ml') or ''}: "
                 f"{machine.get('cpus')} CPUs, Python {machine.get('python')}"
                 f"{' (quick run)' if results.get('args', {}).get('quick') else ''}",
                 fontsize=12)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def machine() -> dict:
    info = {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "comet_ml": None}
    try:
        from importlib.metadata import version
        info["comet_ml"] = version("comet_ml")
    except Exception:
        pass
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    ap.add_argument("--steps", type=int, help="steps of the side-by-side run "
                    "(default 100,000; 20,000 with --quick)")
    ap.add_argument("--names", type=int, default=2, help="metric names of that run")
    ap.add_argument("--skip-recorder", action="store_true")
    ap.add_argument("--skip-upload-bench", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results", "all.json"))
    ap.add_argument("--chart", default=os.path.join(ROOT, "docs", "benchmarks.png"))
    args = ap.parse_args()
    steps = args.steps or (20_000 if args.quick else 100_000)
    names = ["loss", "accuracy", "lr", "grad_norm", "val_loss"][:max(1, args.names)]
    started = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="bench-all-")
    results: dict = {"machine": machine(), "args": {**vars(args), "steps": steps}}
    try:
        if not args.skip_recorder:
            results["recorder"] = run_recorder_bench(args.quick, tmp)
        results["side_by_side"] = side_by_side(tmp, names, steps)
        if not args.skip_upload_bench:
            results["upload"] = run_upload_bench(args.quick)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    rows = table_rows(results)
    print_table(rows)
    results["table_markdown"] = markdown_table(rows)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=2)
    print(f"\nraw figures: {args.out}")
    if chart(results, args.chart):
        print(f"chart: {args.chart}")
    print(f"whole run: {results['seconds']:.0f} s")


if __name__ == "__main__":
    main()
