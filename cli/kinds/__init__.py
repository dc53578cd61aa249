"""One CLI module per result kind; each exports ``INGEST`` and ``REPORT`` command lists."""
