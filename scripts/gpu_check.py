#!/usr/bin/env python3
"""On a machine with an NVIDIA GPU: record a run while the GPU works, and show what the
recorder's sampler journaled (GPU static info in system details, GPU usage samples).

    python scripts/gpu_check.py            # needs nvidia-ml-py; torch optional (load)
Exit 0 when GPU samples were journaled with plausible values.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from comet_journal import Experiment


def load(seconds: float) -> None:
    try:
        import torch
    except ImportError:
        time.sleep(seconds)
        return
    a = torch.randn(8192, 8192, device="cuda")
    end = time.time() + seconds
    while time.time() < end:
        a = (a @ a).clamp_(-1, 1)
    torch.cuda.synchronize()


def main() -> int:
    path = os.path.join(tempfile.mkdtemp(), "gpu.db")
    os.environ.pop("COMET_JOURNAL_AUTO_LOG", None)
    exp = Experiment(journal=path, project_name="gpu", workspace="ws",
                     system_monitor_interval=1.0, auto_output_logging=None, log_code=False,
                     log_git_metadata=False, log_git_patch=False)
    worker = threading.Thread(target=load, args=(5.0,))
    worker.start()
    for step in range(50):
        exp.log_metric("loss", 1.0 / (step + 1), step=step)
        time.sleep(0.1)
    worker.join()
    exp.end()
    conn = sqlite3.connect(path)
    samples = [json.loads(p) for (p,) in conn.execute(
        "SELECT payload FROM calls WHERE endpoint='gpu_metrics' ORDER BY seq")]
    details = [json.loads(p) for (p,) in conn.execute(
        "SELECT payload FROM calls WHERE endpoint='system_details'")]
    static = [d["gpuStaticInfoList"] for d in details if "gpuStaticInfoList" in d]
    print("static info:", json.dumps(static, indent=1))
    for s in samples:
        print("sample:", json.dumps(s))
    peak = max((g["gpuUtilization"] for s in samples for g in s["gpus"]), default=0)
    ok = bool(static) and len(samples) >= 3 and all(
        g["usedMemory"] + g["freeMemory"] <= g["totalMemory"] * 1.01 for s in samples
        for g in s["gpus"]) and any(s.get("step") is not None for s in samples)
    print(f"{len(samples)} GPU samples, peak utilisation {peak}%, static info "
          f"{'present' if static else 'MISSING'}: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
