"""Where images come from: the bundled scikit-image photos, or a user's folder."""
