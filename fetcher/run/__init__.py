"""The run: the dispatcher (bounded window, ordering, every line accounted for), executors
(threads; worker processes), the per-host scheduler and signals."""
