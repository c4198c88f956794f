"""Storage of a knowledge base: the SQLite chunk store and the vector stores."""
