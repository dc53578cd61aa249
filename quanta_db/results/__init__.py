"""Result kinds: one package each (tables, jobs, pure compute), discovered by the registry.

A package here holds ``tables.py`` (declared schemas and parents), one module per job, and its
compute functions; its saved analyses live in ``queries/<kind>/``.
"""
