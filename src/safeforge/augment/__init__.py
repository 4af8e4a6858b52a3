"""Cross-modal variants of training records: requests typeset into images or captioned over
photos (render.py draws, variants.py decides what is drawn from which record)."""
