"""Pareto fronts, plots, reports and the deployment-level chooser (reads run dirs only)."""
