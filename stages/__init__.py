"""DVC stages: `python -m stages.<name>`. Thin: parse params, call safeforge, write outputs."""
