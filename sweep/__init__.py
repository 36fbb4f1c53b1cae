"""One trial (``python -m sweep +level=4``): entry point, config check, stages, trial record. ``search/``: a search."""
