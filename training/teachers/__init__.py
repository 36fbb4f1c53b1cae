"""Teachers write reasoning traces at a compression level. See :mod:`training.teachers.base`."""

from training.teachers.base import Teacher, Trace

__all__ = ["Teacher", "Trace"]
