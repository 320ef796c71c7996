#!/usr/bin/env python3
"""Screenshots of ``comet-upload view`` for the README: the runs list and a run page.

    .venv/bin/python scripts/screenshots.py            # writes docs/viewer-runs.png, docs/viewer-run.png

Records three small demo runs with the real recorder (a temporary directory), serves them
with the viewer, and photographs the pages in headless Chromium (Debian's ``chromium``).
"""

from __future__ import annotations

import math
import os
import random
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.join(HERE, "..", "docs")
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from viewer_helpers import QUIET, ViewerProcess  # noqa: E402
from comet_journal.recorder import Experiment  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


def demo_run(directory: str, name: str, lr: float, seed: int, end: bool = True) -> str:
    rng = random.Random(seed)
    exp = Experiment(journal=os.path.join(directory, f"{name}.db"), project_name="mnist",
                     workspace="research", experiment_name=name, **QUIET)
    exp.log_parameters({"lr": lr, "batch_size": 64, "optimizer": "adam", "epochs": 5})
    exp.add_tags(["demo", "cnn"])
    for step in range(600):
        loss = 2.3 * math.exp(-step * lr / 2) + rng.gauss(0, 0.05)
        with exp.train():
            exp.log_metric("loss", loss, step=step, epoch=step // 120)
        if step % 60 == 0:
            with exp.validate():
                exp.log_metric("loss", loss * 1.1, step=step)
            exp.log_metric("accuracy", 1 - loss / 2.5, step=step)
            exp.log_cpu_metrics([40 + rng.random() * 20, 55 + rng.random() * 10], step=step)
            exp.log_ram_metrics(16 * 2**30, int((4 + rng.random()) * 2**30), step=step)
            exp.log_output(f"epoch {step // 120} step {step}: loss \x1b[32m{loss:.3f}\x1b[0m\n")
    exp.log_output("warning: learning rate schedule not set\n", stderr=True)
    exp.log_text("sample prediction: 7 (label 7)", step=599)
    exp.log_git_metadata(branch="main", origin="git@example.org:ml/mnist.git",
                         parent="4f2a9c1", root="/home/me/mnist", user="me")
    if end:
        exp.end()
    else:
        exp.flush()
    return exp.get_key()


def main() -> None:
    from playwright.sync_api import sync_playwright
    os.makedirs(DOCS, exist_ok=True)
    with tempfile.TemporaryDirectory() as d, sync_playwright() as pw:
        key = demo_run(d, "baseline", 0.01, 1)
        demo_run(d, "higher-lr", 0.03, 2)
        demo_run(d, "warmup", 0.02, 3)
        with ViewerProcess(d) as viewer:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(viewer.url)
            page.wait_for_selector(f'a[data-run="{key}"]')
            page.screenshot(path=os.path.join(DOCS, "viewer-runs.png"))
            page.goto(f"{viewer.url}#/run/{key}")
            page.wait_for_selector('[data-metric="loss"][data-context="train"][data-painted]')
            page.wait_for_timeout(500)
            page.screenshot(path=os.path.join(DOCS, "viewer-run.png"))
            browser.close()
    print("wrote docs/viewer-runs.png and docs/viewer-run.png")


if __name__ == "__main__":
    main()
