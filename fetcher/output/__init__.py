"""Output: records (text, jsonl, csv), the summary, the display, saved bodies and --failed."""
