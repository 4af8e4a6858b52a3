"""A model's own replies, scored: the model under test answers each benchmark item (respond.py),
a rater classifies each reply (raters.py), rates per subset and category follow (rates.py), and
MMSafeAware's awareness protocol asks the model whether an input is safe (awareness.py).
evaluation.py runs it all for the evaluate stage and `safeforge eval` alike."""
