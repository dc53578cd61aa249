"""One CLI module per result kind (named by its declaration, quanta_db.kinds); each exports
``INGEST`` and ``REPORT`` command lists."""
