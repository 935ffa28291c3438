"""Offline texts: item knowledge and user preference profiles, with provenance."""

from ur4rec_recbole.texts.build import build_texts
from ur4rec_recbole.texts.records import TextRecord, read_records, write_records

__all__ = ["TextRecord", "build_texts", "read_records", "write_records"]
