"""Company names reduced to what identifies the organisation, for matching customers to companies.

`Acme Telecom GmbH & Co. KG` and `ACME-Telecom` both become `acme telecom`: case folded, accents removed,
punctuation to spaces, `&`/`+` to `and`, a leading `The` dropped, spaced-out initials joined (`S. A.` -> `sa`),
and the legal form at the end taken off and kept apart (canonical: `Limited` -> `ltd`), so that a differing
legal form weakens the evidence instead of vanishing. A `d/b/a` (or `t/a`, `trading as`) name is kept as an
alternate. Letters of other scripts are kept as they are (never transliterated); a name mixing scripts is
flagged, since look-alike letters are how a decoy passes for a real name.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Legal forms by where they are used; each variant (after normalisation) -> its canonical form.
LEGAL_FORMS: dict[str, str] = {
    # United States, United Kingdom, Ireland, Commonwealth
    "inc": "inc", "incorporated": "inc", "corp": "corp", "corporation": "corp", "llc": "llc", "lc": "llc",
    "ltd": "ltd", "limited": "ltd", "plc": "plc", "llp": "llp", "lp": "lp", "co": "co", "pty": "pty",
    # Germany, Austria, Switzerland
    "gmbh": "gmbh", "ag": "ag", "kg": "kg", "ohg": "ohg", "ug": "ug", "ev": "ev", "kgaa": "kgaa",
    # France, Belgium, Luxembourg, Spain, Portugal, Latin America
    "sa": "sa", "sarl": "sarl", "sas": "sas", "sasu": "sasu", "eurl": "eurl", "sl": "sl", "slu": "slu",
    "lda": "lda", "sacv": "sacv", "sadecv": "sacv", "srl": "srl",
    # Italy, Netherlands, Nordics, Poland
    "spa": "spa", "bv": "bv", "nv": "nv", "ab": "ab", "oy": "oy", "oyj": "oy", "asa": "asa", "aps": "aps",
    "sp": "sp", "zoo": "zoo", "as": "as",
}
# "and" is a legal form's only inside one ("GmbH & Co. KG"); left dangling at the end, it goes too.
_JOINERS = {"and"}
_DBA = re.compile(r"\b(?:d\s*/\s*b\s*/\s*a|dba|t\s*/\s*a|trading\s+as|doing\s+business\s+as)\b")
_NOT_WORD = re.compile(r"[^\w]+|_+")
_LEADING_ARTICLES = {"the"}


@dataclass(frozen=True)
class CompanyName:
    """A normalised name: `text` (tokens joined by spaces) without its legal form, which is `legal_form`."""

    text: str
    tokens: tuple[str, ...]
    legal_form: str | None = None
    mixed_script: bool = False
    trade_name: str | None = None  # the d/b/a part, normalised, when the name carries one


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _scripts(text: str) -> set[str]:
    if text.isascii():
        return {"LATIN"} if any(ch.isalpha() for ch in text) else set()
    return {unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0] for ch in text if ch.isalpha()}


def _tokens(text: str) -> list[str]:
    words = _NOT_WORD.sub(" ", text.replace("&", " and ").replace("+", " and ")).split()
    joined: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1 and word.isalpha():
            run.append(word)  # "s a" (from "S.A.") and "l l c" are one word spelled out
            continue
        if run:
            joined.append("".join(run))
            run = []
        if word:
            joined.append(word)
    return joined


def _strip_legal_form(tokens: list[str]) -> tuple[list[str], str | None]:
    forms: list[str] = []
    while len(tokens) > 1 and (tokens[-1] in LEGAL_FORMS or (forms and tokens[-1] in _JOINERS)):
        word = tokens.pop()
        if word in LEGAL_FORMS:
            forms.append(LEGAL_FORMS[word])
    return tokens, " ".join(reversed(forms)) or None


def _core(text: str) -> tuple[tuple[str, ...], str | None]:
    tokens = _tokens(text)
    if len(tokens) > 1 and tokens[0] in _LEADING_ARTICLES:
        tokens = tokens[1:]
    tokens, form = _strip_legal_form(tokens)
    return tuple(tokens), form


def normalize_name(raw: str | None) -> CompanyName | None:
    """The name's identifying part; None for a name with nothing to match on (empty, whitespace, punctuation)."""
    if not isinstance(raw, str):  # None, or pandas' NaN for a missing value
        return None
    folded = _fold(raw)
    parts = _DBA.split(folded, maxsplit=1)
    tokens, form = _core(parts[0])
    trade_tokens, _ = _core(parts[1]) if len(parts) > 1 else ((), None)
    if not tokens and trade_tokens:
        tokens, trade_tokens = trade_tokens, ()
    if not tokens:
        return None
    return CompanyName(
        text=" ".join(tokens),
        tokens=tokens,
        legal_form=form,
        mixed_script=len(_scripts(folded)) > 1,
        trade_name=" ".join(trade_tokens) or None,
    )
