"""HTTP: one Session per worker thread, the effective request, one deadline, reading bodies,
the retry policy and error kinds. Never imports click or rich."""
