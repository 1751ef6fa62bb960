"""Broken inputs, made at run time (make_corpus.py)."""
