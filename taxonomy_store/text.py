"""Prompt text: normalisation, hashing, and making untrusted text inert on a terminal."""

from __future__ import annotations

import hashlib
import re
import unicodedata

from taxonomy_store.errors import InvalidValue

# The longest prompt text tstore takes anywhere: import, edit, new pair, query, serve. Longer
# texts are almost always a broken quote or a wrong column, and a query of millions of
# characters only costs memory and minutes (the encoder truncates it anyway).
MAX_TEXT_CHARS = 100_000

_WS = re.compile(r"\s+")
# C0/C1 controls (ESC, CSI, BEL, NEL, ...), DEL; the bidi marks, embeddings, overrides and isolates
# that can reorder what a terminal shows (ALM, LRM, RLM, LRE..RLO, LRI..PDI); and the Unicode line
# and paragraph separators, which break a one-line message in two.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def normalise(text: str) -> str:
    """NFC, trimmed, inner whitespace runs folded to one space: the form we hash and compare."""
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def text_sha256(text: str) -> str:
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def inert(text: str, *, keep_newlines: bool = False) -> str:
    """Untrusted text made safe to print: control characters shown as visible escapes (\\x1b)."""

    def escape(m: re.Match) -> str:
        ch = m.group(0)
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    if not keep_newlines:
        text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")
    return _UNSAFE.sub(escape, text)


def check_text_length(text: str, what: str = "the text") -> None:
    """InvalidValue when `text` is longer than MAX_TEXT_CHARS (the one limit of every entry point)."""
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidValue(f"{what} has {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}",
                           "give a shorter text (a prompt, not a document)")
