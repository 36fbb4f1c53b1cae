"""Caches: the content-addressed stage cache and the teachers' response cache."""
