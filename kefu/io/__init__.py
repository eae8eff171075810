"""Reading and writing transcripts and bulk outputs."""

from kefu.io.errors import InputError, KefuError, OnError, Record, RecordError
from kefu.io.readers import FORMATS, detect_format, iter_records, read_text, read_transcripts
from kefu.io.writers import CsvWriter, JsonlWriter, TranscriptCsvWriter, atomic_path, repair_partial_tail

__all__ = [
    "FORMATS",
    "CsvWriter",
    "InputError",
    "JsonlWriter",
    "KefuError",
    "OnError",
    "Record",
    "RecordError",
    "TranscriptCsvWriter",
    "atomic_path",
    "detect_format",
    "iter_records",
    "read_text",
    "read_transcripts",
    "repair_partial_tail",
]
