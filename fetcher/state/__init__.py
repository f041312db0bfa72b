"""Incremental runs (--state): what earlier runs learnt about each URL, kept in SQLite.

``prior`` is what a run carries per URL, ``database`` the file and its schema, ``store`` the
lookups (dispatcher thread) and the writes (the thread that writes records).
"""
