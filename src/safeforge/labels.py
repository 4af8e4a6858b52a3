"""The label set every table, judge and benchmark shares: defined here once."""

SAFE, UNSAFE = "safe", "unsafe"
LABELS = (SAFE, UNSAFE)
