"""``python -m fetcher``."""

from fetcher.cli import main

main(prog_name="fetcher")
