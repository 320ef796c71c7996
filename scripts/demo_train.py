#!/usr/bin/env python3
"""A small, realistic 'training run' recorded with comet-journal (no network needed).

    python scripts/demo_train.py demo.db
"""

from __future__ import annotations

import math
import os
import random
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from comet_journal import Experiment


def main(journal: str, epochs: int = 5, steps_per_epoch: int = 200) -> str:
    rng = random.Random(42)
    with Experiment(journal=journal, project_name="demo-project", workspace="demo-workspace",
                    experiment_name="mnist-mlp") as exp:
        exp.log_parameters({"lr": 0.01, "batch_size": 64,
                            "optimizer": {"name": "adam", "betas": [0.9, 0.999]}})
        exp.add_tags(["demo", "offline"])
        exp.log_other("dataset", "mnist")
        step = 0
        for epoch in range(epochs):
            for _ in range(steps_per_epoch):
                loss = 2.3 * math.exp(-step / 300) + rng.random() * 0.05
                with exp.train():
                    exp.log_metric("loss", loss, step=step, epoch=epoch)
                step += 1
            accuracy = 1 - 0.9 * math.exp(-(epoch + 1) / 2)
            with exp.validate():
                exp.log_metric("accuracy", accuracy, step=step, epoch=epoch)
            exp.log_output(f"epoch {epoch}: loss={loss:.4f} accuracy={accuracy:.4f}\n")
        exp.log_metric("nan_example", float("nan"), step=step)
        with tempfile.NamedTemporaryFile("wb", suffix=".bin", delete=False) as fh:
            fh.write(os.urandom(256 * 1024))
            weights = fh.name
        exp.log_asset(weights, file_name="weights.bin", step=step)
        os.unlink(weights)
        exp.log_text("a prediction: 7", step=step)
        exp.log_html("<h1>Demo run</h1>")
        exp.set_code("print('training code')")
        exp.log_cpu_metrics([12.5, 40.0], step=step)
        exp.log_ram_metrics(16 * 2**30, 5 * 2**30, step=step)
        exp.log_load_metrics(0.75, step=step)
        key = exp.key
    return key


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo.db")  # end() prints where it is
