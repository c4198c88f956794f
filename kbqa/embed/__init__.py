"""Embedding stage: texts -> L2-normalised vectors (protocol, factory, implementations)."""
