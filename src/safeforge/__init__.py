"""safeforge: dataset-as-code for real-world multimodal safety data."""
