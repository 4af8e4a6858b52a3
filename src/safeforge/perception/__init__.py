"""Image perception models: OCR and NSFW scoring."""
