"""Consensa's tests; a package so that the shared helpers import as ``tests.study``."""
