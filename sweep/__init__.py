"""Entry points and trial orchestration: ``python -m sweep +level=4``."""
