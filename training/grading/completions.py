"""The completion format every level shares: a think block, then a final answer line.

    <think>
    m=48/2=24→t=48+m=72
    </think>
    #### 72

Delimiters are parameters because students differ (Qwen3 uses <think>; others
may not); the ``#### N`` answer line is GSM8K's and what strict grading reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_LINE = re.compile(r"^[ \t]*####[ \t]*(.*?)[ \t]*$", re.MULTILINE)


def format_completion(trace: str, answer: str, open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> str:
    return f"{open_tag}\n{trace.strip()}\n{close_tag}\n#### {answer}"


@dataclass(frozen=True)
class ParsedCompletion:
    n_open: int
    n_close: int
    think: str | None  # content of the single well-formed block, stripped; None otherwise
    answers: list[str] = field(default_factory=list)  # text of each '####' line after the block

    @property
    def well_formed(self) -> bool:
        return self.n_open == 1 and self.n_close == 1 and self.think is not None


def parse_completion(text: str, open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> ParsedCompletion:
    """Split a completion into its think content and the answer lines after it."""
    n_open, n_close = text.count(open_tag), text.count(close_tag)
    start, end = text.find(open_tag), text.find(close_tag)
    think = None
    if n_open == 1 and n_close == 1 and start < end and not text[:start].strip():
        think = text[start + len(open_tag) : end].strip()
    after = text[end + len(close_tag) :] if end >= 0 else (text if n_open == 0 else "")
    return ParsedCompletion(n_open, n_close, think, [m.group(1) for m in ANSWER_LINE.finditer(after)])


def think_text(text: str, open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> str | None:
    """What the model spent on thinking: from the first opener to the next closer, or to the end if unclosed.

    None when there is no opener at all. A closer with no opener (templates that
    pre-fill the opener) counts everything before it.
    """
    start = text.find(open_tag)
    if start < 0:
        end = text.find(close_tag)
        return text[:end].strip() if end >= 0 else None
    body = text[start + len(open_tag) :]
    end = body.find(close_tag)
    return (body[:end] if end >= 0 else body).strip()
