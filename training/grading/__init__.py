"""Grading: answer extraction (strict, flexible), numbers, think-block parsing, and the trace filter."""
