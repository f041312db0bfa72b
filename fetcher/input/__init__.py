"""Input: lazy URL sources (lines, jsonl, csv), validation, deduplication and sharding."""
