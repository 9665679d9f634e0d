"""The ingest service (IngestService). See README.md beside this file."""
