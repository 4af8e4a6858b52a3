"""Duplicate detection: exact, perceptual and text; clusters with one keeper each."""
