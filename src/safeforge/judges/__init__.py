"""Judges: one interface (`base.Judge`), saved to a folder with `judge.json`, loaded by `load_judge`."""
