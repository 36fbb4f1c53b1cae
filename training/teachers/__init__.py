"""Teachers write reasoning traces at a compression level. See :mod:`training.teachers.base`.

- ``reference`` (:mod:`training.teachers.reference`): renders the data set's own solutions, no model.
- ``openai`` (:mod:`training.teachers.openai_api`): any OpenAI-compatible chat endpoint (vLLM, TGI, hosted).
"""

from training.teachers.base import Teacher, Trace

__all__ = ["Teacher", "Trace"]
