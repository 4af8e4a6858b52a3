"""Image decoding, verification and normalisation."""
