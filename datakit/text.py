"""Text primitives: cleaning, paragraphs and sentences, language guess, tokens and shingles.

Every rule that runs both on one string and on a whole column is written once, as a regex
that Python's `regex` module and polars' Rust engine read the same way (shared patterns use
only `\\xHH`, `\\uHHHH`, `\\p{..}` and nested set operations; no anchors, no `\\s`). So `normalize` and
`normalize_expr`, `tokens` and `tokens_expr` agree by construction; tests check it on real data.
"""

from __future__ import annotations

import unicodedata

import polars as pl
import regex

# ---- normalize ----------------------------------------------------------------------------

# (pattern, replacement) steps, in order. NFC runs between the two lists, after the invisible
# characters are gone, so "e<ZWSP><U+0301>" still composes to "é".
_CLEAN = [
    (r"\r\n?", "\n"),
    # VT, FF, NEL and LINE SEPARATOR are line breaks (as in str.splitlines): deleting them would glue words.
    (r"[\x0B\x0C\x85\u2028]", "\n"),
    (r"\u2029", "\n\n"),
    # zero-width space/joiners, word joiner, BOM, soft hyphen, and C0/C1 controls other than \t and \n
    (r"[\u200B\u200C\u200D\u2060\uFEFF\u00AD\x00-\x08\x0E-\x1F\x7F-\x84\x86-\x9F]", ""),
]
_LAYOUT = [
    (r"[\t\p{Zs}]+", " "),  # NBSP, ideographic space and every other Unicode space, and tabs
    (r" *\n *", "\n"),  # strip each line's ends
    (r"\n{3,}", "\n\n"),  # at most one blank line: a paragraph break
]
_CLEAN_RE = [(regex.compile(p), r) for p, r in _CLEAN]
_LAYOUT_RE = [(regex.compile(p), r) for p, r in _LAYOUT]


def normalize(text: str) -> str:
    """NFC, invisible and control characters removed, one space between words, lines stripped,
    newlines as \\n and at most one blank line between paragraphs.

    Meant for comparing, deduplicating and segmenting prose: it flattens code indentation,
    so do not write its output back over code-bearing records.
    """
    for pattern, replacement in _CLEAN_RE:
        text = pattern.sub(replacement, text)
    text = unicodedata.normalize("NFC", text)  # macOS hands us NFD Hangul, which looks equal but hashes differently
    for pattern, replacement in _LAYOUT_RE:
        text = pattern.sub(replacement, text)
    return text.strip(" \n")


def normalize_expr(expr: pl.Expr) -> pl.Expr:
    """`normalize` as a polars expression over a string column (same steps, same patterns)."""
    for pattern, replacement in _CLEAN:
        expr = expr.str.replace_all(pattern, replacement)
    expr = expr.str.normalize("NFC")
    for pattern, replacement in _LAYOUT:
        expr = expr.str.replace_all(pattern, replacement)
    return expr.str.strip_chars(" \n")


# Any character or run that some step above would change. Rows without one only need NFC, so
# `normalize_series` skips the five regex passes for them (most rows of clean corpora).
_NEEDS_WORK = (
    r"[\r\x0B\x0C\x85\u2028\u2029\u200B\u200C\u200D\u2060\uFEFF\u00AD\x00-\x08\x0E-\x1F\x7F-\x84\x86-\x9F]"
    r"|[\t\u00A0\u1680\u2000-\u200A\u202F\u205F\u3000]|[\t\p{Zs}]{2,}| \n|\n |\n{3,}|^[ \n]|[ \n]$"
)


# Every character below U+0300 is its own NFC form (combining marks start at U+0300).
_MAY_COMPOSE = r"[^\x00-\u02FF]"


def normalize_series(texts: pl.Series) -> pl.Series:
    """`normalize` over a column, doing only the work each row needs: the full pipeline where
    some step would change it, NFC alone where only that can, nothing for plain Latin text."""
    nfc = texts
    composable = texts.str.contains(_MAY_COMPOSE).fill_null(False).arg_true()
    if len(composable):
        nfc = texts.clone().scatter(composable, texts.gather(composable).str.normalize("NFC"))
    todo = texts.str.contains(_NEEDS_WORK).fill_null(False).arg_true()
    if len(todo) == 0:
        return nfc
    fixed = pl.select(normalize_expr(pl.lit(texts.gather(todo)))).to_series()
    return nfc.scatter(todo, fixed)


# ---- language guess -----------------------------------------------------------------------

LANGS = ("ko", "ja", "zh", "en", "other")
_COUNT_RE = {name: regex.compile(p) for name, p in {
    "hangul": r"\p{sc=Hangul}", "kana": r"[\p{sc=Hiragana}\p{sc=Katakana}]", "han": r"\p{sc=Han}",
    "latin": r"\p{sc=Latin}", "letters": r"\p{L}",
}.items()}
_GUESS_CHARS = 10_000  # the head of a document is enough for a stable guess and keeps megabyte texts cheap


def guess_lang(text: str) -> str:
    """Guess "ko", "ja", "zh", "en" or "other" from Unicode script counts.

    One CJK character carries about as much as a 3-letter Latin word, so CJK counts weigh 3x
    against Latin ones: "오늘 iPhone을 샀다" is Korean. "en" means Latin script (French is "en" too).
    """
    head = text[:_GUESS_CHARS]
    n = {name: len(pattern.findall(head)) for name, pattern in _COUNT_RE.items()}
    cjk = n["hangul"] + n["kana"] + n["han"]
    if n["letters"] == 0:
        return "other"
    if cjk and 3 * cjk >= n["letters"] - cjk:
        if n["hangul"] >= n["kana"] + n["han"]:
            return "ko"  # Korean may carry Hanja; Japanese or Chinese may quote a Korean name
        # Japanese prose is a third or more kana; Chinese quotes Japanese names ("サカナクション"):
        # alpaca_zh has one answer at 16% kana, so ja needs at least one kana in five
        return "ja" if 5 * n["kana"] >= n["kana"] + n["han"] else "zh"
    return "en" if 2 * n["latin"] >= n["letters"] - cjk else "other"


# ---- paragraphs and sentences -------------------------------------------------------------

# Hand-written rules, no dependency: pysbd has no Korean, got 8 of 11 en/zh/ja test cases and is
# ~170x slower (5.3 s vs 0.03 s on 0.2 MB of wiki); kss does Korean only and pulls in ~600 MB.
_CLOSERS = "\"'”’»)\\]}」』）》〉】］｝〕"
_OPENERS = "\"'“‘«(\\[{「『（《〈【［｛〔¿¡"
_STOP_RE = regex.compile(rf"(?P<stop>[.!?。！？．]+)[{_CLOSERS}]*")
_OPENS_SENTENCE_RE = regex.compile(rf"[\p{{Lu}}\p{{Lt}}\p{{Lo}}\p{{N}}{_OPENERS}]")
_CJK_CHAR_RE = regex.compile(r"[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}]")
_HANGUL_RE = regex.compile(r"\p{sc=Hangul}")
_ACRONYM_RE = regex.compile(r"\p{L}(?:\.\p{L})+")  # U.S, a.m, U.S.A (the last dot is the stop)
_LEADING_PUNCT_RE = regex.compile(rf"^[{_OPENERS}]+")
_LETTERS_RE = regex.compile(r"\p{L}*")
_INITIAL_NEXT_RE = regex.compile(r" \p{Lu}\.")
_GLUED_BEFORE_RE = regex.compile(r"\p{Ll}{2}$")
_GLUED_AFTER_RE = regex.compile(r"\p{Lu}\p{Ll}{2}")
# Never end a sentence: titles and words that always lead into more ("Dr. Kim", "Fig. 3", "e.g. this").
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st mt gen col capt lt sgt rev hon gov sen rep vs cf e.g i.e fig figs eq ref vol pp "
    "approx dept univ ave blvd rd jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
# End a sentence only before a word that usually opens one: "in the U.S. The law" but "the U.S. Army".
_FINAL_ABBREVIATIONS = frozenset("etc inc ltd co corp jr sr al".split())
_STARTERS = frozenset(
    "The A An In On At As By It Its This That These Those There Then He She They We I You But And Or So "
    "However Yet If When While After Before For Since Although Thus".split()
)


def segment_paragraphs(text: str) -> list[str]:
    """Paragraphs of the normalized text: the pieces between blank lines, empty ones dropped."""
    return [p for p in normalize(text).split("\n\n") if p]


def segment_sentences(text: str, lang: str | None = None) -> list[str]:
    """Sentences of the normalized text, for Korean, English, Chinese and Japanese.

    A newline always ends a sentence; 。！？ (and ．, unless a digit follows) end one with or
    without a following space; . ! ? end one before a space and an uppercase letter, digit,
    opening quote or caseless letter (Hangul, Han, kana), after a Hangul ending whatever
    follows, or before the end of the line. Abbreviations (Mr., e.g., U.S.), initials (J. R. R.)
    and list numbers ("1. ") do not end a sentence; closing quotes and brackets stay with theirs.
    `lang` (guessed when None) only matters for "zh" and "ja", where a halfwidth ! or ? between
    CJK characters ends a sentence (text typed without a fullwidth IME: "你好!我是学生").
    """
    lang = lang or guess_lang(text)
    if lang not in LANGS:
        raise ValueError(f"unknown lang {lang!r}; use one of {', '.join(LANGS)} or None to guess")
    sentences: list[str] = []
    for line in normalize(text).split("\n"):
        start = 0
        for m in _STOP_RE.finditer(line):
            if _ends_sentence(line, start, m, lang):
                sentences.append(line[start:m.end()].strip(" "))
                start = m.end()
        sentences.append(line[start:].strip(" "))
    return [s for s in sentences if s]


def _ends_sentence(line: str, start: int, m: regex.Match, lang: str) -> bool:
    """Whether the stop run `m` (with its closing quotes) ends the sentence begun at `start`."""
    stop, before, after = m["stop"], line[start:m.start()].lstrip(" "), line[m.end():]
    if not after:
        return True
    if any(c in stop for c in "。！？") or ("．" in stop and not after[0].isdigit()):
        return True  # CJK full stops need no space after them; a fullwidth "３．１４" is a decimal
    if after[0] != " ":
        return _ends_glued(stop, before, after, lang)
    nxt = after.lstrip(" ")[:1]
    # Korean has no capitals: after a Hangul ending ("했다. iPhone은") any next word starts a sentence
    if not (_OPENS_SENTENCE_RE.match(nxt) or _HANGUL_RE.match(before[-1:])):
        return False
    return stop != "." or not _is_abbreviation(before, after.lstrip(" "))


def _ends_glued(stop: str, before: str, after: str, lang: str) -> bool:
    """A stop with no space after it: "3.14", "v1.2" and "example.com" go on, but a lost space
    ("socialism.Humans" in wiki and web dumps, "했다.그리고"), or in zh/ja text a halfwidth ! or ?
    between CJK characters ("你好!我是"), ends the sentence."""
    if _GLUED_BEFORE_RE.search(before) and _GLUED_AFTER_RE.match(after):
        return True
    if _HANGUL_RE.match(before[-1:]) and _HANGUL_RE.match(after[0]):
        return True
    cjk_around = _CJK_CHAR_RE.match(before[-1:]) and _CJK_CHAR_RE.match(after[0])
    return bool(lang in ("zh", "ja") and "." not in stop and cjk_around)


def _is_abbreviation(before: str, rest: str) -> bool:
    """Whether the word before a single "." is an abbreviation, initial or list number, not a
    sentence end; `rest` is the text after the stop, from the next word on."""
    words = before.split(" ")
    word = _LEADING_PUNCT_RE.sub("", words[-1])
    low, next_word = word.lower(), _LETTERS_RE.match(rest)[0]
    if low == "no":
        return rest[:1].isdigit()  # "No. 5" is a number sign; "No. I refuse." is a sentence
    if low in ABBREVIATIONS:
        return True
    if low in _FINAL_ABBREVIATIONS or _ACRONYM_RE.fullmatch(word):
        return next_word not in _STARTERS
    if len(word) == 1 and word.isalpha():
        # initials ("J. R. R. Tolkien"), "p. 137", "Roe v. Wade"; but "I." ends a sentence
        # unless another initial follows ("I. M. Pei")
        return word != "I" or bool(_INITIAL_NEXT_RE.match(" " + rest))
    return word.isdigit() and len(word) <= 3 and len(words) == 1  # "1. 첫째" at a sentence start is a list item


# ---- tokens and shingles ------------------------------------------------------------------

_CJK_SCRIPTS = r"\p{scx=Han}\p{scx=Hangul}\p{scx=Hiragana}\p{scx=Katakana}"
# One CJK letter or digit per token; any other run of letters and digits (combining marks may
# continue it: Devanagari, decomposed accents) is one token. Script_Extensions puts the
# prolonged sound mark ー with the kana. Nested set operations read the same in `regex` (V1)
# and Rust, whose precedence between && and -- differs, hence one operation per bracket.
TOKEN_RE = (
    rf"[[\p{{L}}\p{{N}}]&&[{_CJK_SCRIPTS}]]"
    rf"|[[\p{{L}}\p{{N}}]--[{_CJK_SCRIPTS}]][[\p{{L}}\p{{M}}\p{{N}}]--[{_CJK_SCRIPTS}]]*"
)
_TOKEN_RE = regex.compile(TOKEN_RE, regex.V1)


def tokens(text: str) -> list[str]:
    """Lowercased tokens: each CJK character alone, each other run of letters/digits whole."""
    return _TOKEN_RE.findall(text.lower())


def tokens_expr(expr: pl.Expr) -> pl.Expr:
    """`tokens` as a polars expression: a list[str] column."""
    return expr.str.to_lowercase().str.extract_all(TOKEN_RE)


def shingles(text: str, n: int = 5) -> list[str]:
    """Every window of `n` consecutive tokens, joined by one space.

    Space-delimited text gives word n-grams ("the quick brown fox jumps"), CJK text character
    n-grams ("今 天 天 气 很"). A text with 1 to n-1 tokens gives one shingle of all of them (so
    short texts can still match); a text without tokens gives [].
    """
    if n < 1:
        raise ValueError(f"shingle size n must be at least 1, got n={n}")
    toks = tokens(text)
    if len(toks) < n:
        return [" ".join(toks)] if toks else []
    return [" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1)]
