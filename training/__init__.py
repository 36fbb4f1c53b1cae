"""Data, compression levels, teachers, filtering, SFT and evaluation for cot-pareto."""
