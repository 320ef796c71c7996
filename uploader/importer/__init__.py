"""Import comet_ml ``OfflineExperiment`` archives (and rescued runs) into journals."""

from comet_journal.uploader.importer.importing import (ImportResult, import_for_upload,
                                                       import_source, imported_journal_path)
from comet_journal.uploader.importer.source import ArchiveError

__all__ = ["ArchiveError", "ImportResult", "import_for_upload", "import_source",
           "imported_journal_path"]
