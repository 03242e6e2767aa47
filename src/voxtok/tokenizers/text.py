"""Audio ids as text tokens, one token string per id, for text LLMs and their tokenizers.

Codebook ``q``'s code ``k`` is ``<|a{q}_{k}|>``; the special ids are ``<|audio_start|>``, ``<|audio_end|>`` and
``<|audio_pad|>``. Strings are lower case and hold no spaces, so lower-casing tokenizers (BERT) and tokenizers
that split on spaces leave them whole. ``extend_hf_tokenizer`` adds them to a transformers tokenizer at exactly
the ids ``Layout`` gives them.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import torch
from torch import Tensor

from voxtok.tokenizers.layouts import SPECIALS, Layout

TOKEN_FORMAT = "<|a{q}_{k}|>"
SPECIAL_TOKENS = {name: f"<|{name}|>" for name in SPECIALS}
_TOKEN = re.compile(r"<\|a(\d+)_(\d+)\|>|<\|(audio_start|audio_end|audio_pad)\|>")
_SPACE = re.compile(r"\s*")


def token_strings(layout: Layout) -> list[str]:
    """Every token string in id order: ``tokens[i]`` is id ``layout.offset + i``."""
    return list(_token_table(layout.codebook_sizes))


@functools.lru_cache(maxsize=8)
def _token_table(codebook_sizes: tuple[int, ...]) -> tuple[str, ...]:
    # Built once per id space: 65536-code tokenizers (X-codec2) would otherwise rebuild it for every to_text call.
    out = [TOKEN_FORMAT.format(q=q, k=k) for q, size in enumerate(codebook_sizes) for k in range(size)]
    return tuple(out + [SPECIAL_TOKENS[name] for name in SPECIALS])


def ids_to_text(ids: Tensor, layout: Layout) -> str:
    """Ids of one item (``layout.to_ids``'s shape) -> text. 2-D layouts are read step by step: all streams at
    step 0, then step 1, ... (what a text LM that interleaves the streams sees)."""
    if ids.dim() != (2 if layout.is_2d else 1):
        raise ValueError(f"text holds one item: {layout.kind} ids of shape {'[Q, steps]' if layout.is_2d else '[n]'}; "
                         f"got shape {tuple(ids.shape)} (a batch? convert its items one by one)")
    x = ids.T if layout.is_2d else ids
    start, end = layout.offset, layout.offset + layout.vocab_size
    x = x.reshape(-1).tolist()
    bad = next((i for i, v in enumerate(x) if not start <= v < end), None)
    if bad is not None:
        raise ValueError(f"ids (read step by step) position {bad} = {x[bad]} is outside [{start}, {end})")
    table = _token_table(layout.codebook_sizes)
    return "".join([table[v - start] for v in x])


def text_to_ids(text: str, layout: Layout) -> Tensor:
    """Text of audio tokens -> ids (``[n]``, or ``[Q, n / Q]`` for 2-D layouts). Whitespace between tokens is
    ignored (a tokenizer's ``decode`` puts spaces there); any other text raises, naming where it is."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str; got {type(text).__name__}")
    ids: list[int] = []
    special = {name: layout.audio_start_id + i for i, name in enumerate(SPECIALS)}
    pos = _SPACE.match(text).end()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"text[{pos}:] = {text[pos:pos + 24]!r} is not an audio token ({TOKEN_FORMAT} or one "
                             f"of {', '.join(SPECIAL_TOKENS.values())})")
        if m.group(3):
            ids.append(special[m.group(3)])
        else:
            q, k = int(m.group(1)), int(m.group(2))
            if q >= layout.n_q or k >= layout.codebook_sizes[q]:
                sizes = layout.codebook_sizes
                raise ValueError(f"text[{pos}] = {m.group(0)!r} is outside this tokenizer's codebooks "
                                 f"({layout.n_q} codebooks of sizes {list(sizes)})")
            ids.append(layout.codebook_offsets[q] + k)
        pos = _SPACE.match(text, m.end()).end()
    x = torch.tensor(ids, dtype=torch.long)
    if layout.is_2d:
        if x.numel() % layout.n_q:
            raise ValueError(f"{layout.kind} text holds {layout.n_q} tokens per step; got {x.numel()} tokens, "
                             f"a partial step at the end")
        x = x.reshape(-1, layout.n_q).T.contiguous()
    return x


def extend_hf_tokenizer(tokenizer: Any, layout: Layout) -> dict[str, int]:
    """Add the layout's audio tokens and its special tokens to a transformers tokenizer, at the layout's ids.

    The tokenizer must hold exactly ``layout.offset`` tokens (``len(tokenizer)``), or already hold these tokens
    at these ids (a second call changes nothing). Audio tokens are added as plain tokens and the three specials
    as special tokens, all with ``normalized=False`` (matched before lower-casing or other normalisation), so
    ``tokenizer(text, add_special_tokens=False)["input_ids"]`` of ``ids_to_text`` text is exactly the ids.

    Returns:
        ``{token string: id}`` for every token added (or found).
    """
    from tokenizers import AddedToken  # transformers' own dependency, imported only here

    tokens = token_strings(layout)
    expected = {t: layout.offset + i for i, t in enumerate(tokens)}
    have = tokenizer.convert_tokens_to_ids(tokens)
    unk = getattr(tokenizer, "unk_token_id", None)
    present = [(t, i) for t, i in zip(tokens, have, strict=True) if i is not None and i != unk]
    wrong = [(t, i) for t, i in present if i != expected[t]]
    if wrong:
        t, i = wrong[0]
        raise ValueError(f"the tokenizer already holds {t!r} at id {i}, not {expected[t]}: it was extended for "
                         f"another offset or codec")
    if len(present) == len(tokens):
        return expected
    if present or len(tokenizer) != layout.offset:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the audio ids start at offset {layout.offset}; build the "
            f"AudioTokenizer with offset=len(tokenizer) ({len(tokenizer)}) so its ids follow the text vocabulary"
        )
    n_audio = layout.audio_size
    tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in tokens[:n_audio]])
    tokenizer.add_tokens([AddedToken(t, normalized=False, special=True) for t in tokens[n_audio:]],
                         special_tokens=True)
    got = tokenizer.convert_tokens_to_ids(tokens)
    off = next((t for t, i in zip(tokens, got, strict=True) if i != expected[t]), None)
    if off is not None:
        raise ValueError(f"the tokenizer put {off!r} at id {got[tokens.index(off)]}, not {expected[off]}")
    return expected
