"""Shared I/O: the error types, JSONL, atomic writes and file locks, the package-data locator."""
