"""Readers of the raw datasets the ingest stage understands (index files, parse annotations)."""
