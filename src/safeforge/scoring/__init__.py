"""Scoring: judge-quality metrics (binary, per group, ROC, confusion rows) in numpy and polars."""
