"""Answer generators: extractive (default), transformers (GLM family), openai-compatible."""
