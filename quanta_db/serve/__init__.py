"""quanta-db serve: the store as a read-only web service (pages and a JSON API)."""
