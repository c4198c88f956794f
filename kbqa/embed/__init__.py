"""Embedding stage: texts -> L2-normalised vectors (protocol, factory, implementations).

The bundled model's identity lives in the package itself, the one place every module of the
stage can import: docker's model layer runs e5_rebuild with only this file beside it.
"""

# Both ways of running the bundled model share this id: same weights, so a KB built one way
# can be searched the other way (vectors agree to cosine >= 0.999).
E5_MODEL_ID = "multilingual-e5-small-q4"
E5_DIM = 384
# e5 was trained with these prefixes: without them its cosines are lower and less telling.
E5_QUERY_PREFIX = "query: "
E5_PASSAGE_PREFIX = "passage: "
