"""The prompt chain: a conversation with a model backend, step by step, each reply checked
against its JSON schema and asked again once when unusable. perception (VLM descriptions) and
generate (the RMS chain) both run on it."""
