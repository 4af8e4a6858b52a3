"""The image-oriented, self-adaptive generation step: the image decides which risks are real."""
