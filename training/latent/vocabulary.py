"""The reserved abstract vocabulary of the latent level (Abstract-CoT, seed card 004): M symbols and two markers.

The student reasons in a short span of these symbols between the markers, then answers:

    <latent><z07><z41><z03></latent>
    #### 72

The tokens are added to the tokenizer as ordinary (not "special") added tokens: each stays one token, and
decoding with ``skip_special_tokens=True`` keeps them, so the span is visible in outputs and counted as the
trial's think tokens. The ids are read back from any tokenizer that holds them (an adapter folder's), so an
eval-only run finds the same ids the training used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from training.common.errors import ConfigError

OPEN = "<latent>"
CLOSE = "</latent>"


def symbol_names(m: int) -> list[str]:
    """``<z00>`` ... ``<z{m-1}>``: names that no pretrained tokenizer holds as one token."""
    if not isinstance(m, int) or isinstance(m, bool) or not 1 <= m <= 1000:
        raise ConfigError(f"level.n_symbols must be an integer in [1, 1000], got {m!r}")
    width = max(2, len(str(m - 1)))
    return [f"<z{i:0{width}d}>" for i in range(m)]


def symbol_indices(text: str, symbols: Sequence[str]) -> list[int]:
    """The indices of the reserved symbols in ``text``, in order (the markers and any other text skipped)."""
    index = {name: i for i, name in enumerate(symbols)}
    return [index[name] for name in re.findall(r"<z\d+>", text) if name in index]


@dataclass(frozen=True)
class AbstractVocab:
    """The reserved tokens' names and ids in one tokenizer."""

    symbols: tuple[str, ...]
    symbol_ids: tuple[int, ...]
    open_id: int
    close_id: int

    @property
    def ids(self) -> tuple[int, ...]:
        """Every reserved id: the rows of the embedding (and LM head) that training moves."""
        return (*self.symbol_ids, self.open_id, self.close_id)

    @property
    def allowed_in_span(self) -> tuple[int, ...]:
        """What may be generated inside the span: a symbol, or the closing marker."""
        return (*self.symbol_ids, self.close_id)

    def span(self, symbol_indices: list[int]) -> str:
        """The text of a span of the given symbols, markers included."""
        return OPEN + "".join(self.symbols[i] for i in symbol_indices) + CLOSE


def add_abstract_tokens(tokenizer, m: int) -> AbstractVocab:
    """Add the M symbols and the two markers to ``tokenizer`` (those it already holds are kept); their ids."""
    names = [*symbol_names(m), OPEN, CLOSE]
    held = tokenizer.get_vocab()  # once: each call builds the whole vocabulary (0.17 s for Qwen3's)
    tokenizer.add_tokens([name for name in names if name not in held], special_tokens=False)
    return abstract_vocab(tokenizer, m)


def abstract_vocab(tokenizer, m: int) -> AbstractVocab:
    """The reserved tokens' ids in a tokenizer that already holds them (an extended one, or an adapter's)."""
    names = [*symbol_names(m), OPEN, CLOSE]
    vocab = tokenizer.get_vocab()
    missing = [name for name in names if name not in vocab]
    if missing:
        raise ConfigError(f"the tokenizer has no abstract tokens {', '.join(missing[:3])}"
                          f"{'...' if len(missing) > 3 else ''}: was it extended with level.n_symbols={m}?")
    for name in names:  # one token each, or the span would be counted and constrained wrongly
        if len(tokenizer.encode(name, add_special_tokens=False)) != 1:
            raise ConfigError(f"the abstract token {name} does not encode as one token")
    return AbstractVocab(symbols=tuple(names[:m]), symbol_ids=tuple(vocab[name] for name in names[:m]),
                         open_id=vocab[OPEN], close_id=vocab[CLOSE])


def resize_for(model, tokenizer) -> bool:
    """Grow ``model``'s embedding (and a separate LM head) to the tokenizer's length; False if it already fits.

    New rows start at the mean of the old ones (transformers' ``mean_resizing``), so the reserved tokens begin
    as a bland, average symbol rather than noise that would swamp the first steps' logits.
    """
    size = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= size:
        return False
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return True
