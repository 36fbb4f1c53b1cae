"""One search: the Optuna study and its storage, the search space, the sweeper's settings and trial bookkeeping,
``sweep_summary.csv``, worker processes and the grid callback."""
