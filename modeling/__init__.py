"""Encoders, heads, losses and the assembled models of trimo (retrieval: `modeling.retrieval`)."""
