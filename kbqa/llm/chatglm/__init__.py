"""The ChatGLM family loaded natively (no remote code): detection, conversion, tokenizers, chat."""
