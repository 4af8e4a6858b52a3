"""Quality checks: each adds score columns and returns a drop reason per row (or null)."""
