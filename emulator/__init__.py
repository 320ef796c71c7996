"""A local Comet-compatible server (the emulator), with fault injection.

Serves every endpoint of write-endpoints.md (validated with the shared catalogue), the
official SDK's own clientlib/batch routes, enough REST v2 reads to read everything back, and
``/emulator/`` control endpoints (state dump, faults). See ``emulator/README.md``.

Example::

    from comet_journal.emulator import Emulator
    with Emulator(api_key="k") as emu:
        print(emu.url)
"""

from comet_journal.emulator.errors import ApiError, FaultSpecError
from comet_journal.emulator.server import Emulator

__all__ = ["ApiError", "Emulator", "FaultSpecError"]
