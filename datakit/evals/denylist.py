"""Well-known AI vendors and model families an identity answer must not claim (FIELD_NOTES 3).

    find_denied("저는 ＣｈａｔＧＰＴ입니다")  ->  [("ChatGPT", "ChatGPT")]

Matching is on NFKC text (full-width folds to ASCII), tolerates up to two spaces, hyphens, dots,
underscores or middle dots between letters ("G P T-4", "chat.gpt"), and keeps word edges so ordinary
words do not match. Names that are also common words follow stricter rules, chosen per entry:
  i  any case                      OpenAI, ChatGPT, Qwen, 클로드
  c  case as written (a name)      "Gemini" matches, "a fine gemini horoscope" does not; likewise
                                   Claude, Bard, Mistral, Grok, Meta, Copilot, Kimi, MiniMax, ERNIE
  v  only before a version/"model" "Llama 3", "llama-2", "Llama model" match, "llama wool" does not;
                                   likewise Phi, Yi, Solar, 라마 (inside 드라마, "drama", never)
Korean forms must not follow another Hangul syllable (so 라마 is not found in 드라마) but may take
particles after them (클로드는).

`find_vendor_names` (used by `datakit lint`) is the looser superset: it also catches digit look-alikes
("0penAI", "L1ama 3", "G3mini"), one-edit typos of distinctive names ("Antropic", "ChatGTP", "OpenAl"),
and names from an editable alias file (`load_deny_file`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import regex

from datakit.text import normalize

# (canonical name, mode, surface forms). Spacing/hyphen/dot variants need no entry of their own.
VENDORS: list[tuple[str, str, list[str]]] = [
    ("OpenAI", "i", ["OpenAI", "오픈AI", "오픈에이아이", "オープンAI", "オープンエーアイ"]),
    ("ChatGPT", "i", ["ChatGPT", "챗GPT", "챗지피티", "쳇GPT", "쳇지피티", "챗지티피", "チャットGPT", "チャットジーピーティー"]),
    ("GPT", "i", ["GPT", "지피티", "ジーピーティー"]),
    ("Anthropic", "i", ["Anthropic", "앤트로픽", "앤스로픽", "アンソロピック", "アンスロピック"]),
    ("Claude", "c", ["Claude"]),
    ("Claude", "i", ["클로드", "クロード"]),
    ("Google", "i", ["Google", "구글", "グーグル", "谷歌"]),
    ("Gemini", "c", ["Gemini"]),
    ("Gemini", "i", ["제미나이", "제미니", "ジェミニ", "ジェミナイ"]),
    ("Bard", "c", ["Bard"]),
    ("Bard", "i", ["바드"]),
    ("Meta", "c", ["Meta AI", "Meta"]),
    ("Meta", "i", ["메타 AI", "메타에이아이"]),
    ("Llama", "c", ["LLaMA"]),
    ("Llama", "v", ["Llama", "라마", "ラマ"]),
    ("Mistral", "c", ["Mistral"]),
    ("Mistral", "i", ["Mixtral", "미스트랄", "ミストラル"]),
    ("Qwen", "i", ["Qwen", "큐원", "큐웬", "通义千问", "千问", "通義千問"]),
    ("Alibaba", "i", ["Alibaba", "알리바바", "阿里巴巴", "阿里云", "アリババ"]),
    ("Tongyi", "i", ["Tongyi", "통이", "通义"]),
    ("DeepSeek", "i", ["DeepSeek", "딥시크", "딥식", "深度求索", "ディープシーク"]),
    ("Baidu", "i", ["Baidu", "바이두", "百度", "バイドゥ"]),
    ("ERNIE", "c", ["ERNIE"]),
    ("ERNIE", "i", ["文心一言", "文心"]),
    ("Microsoft", "i", ["Microsoft", "마이크로소프트", "マイクロソフト", "微软"]),
    ("Copilot", "c", ["Copilot"]),
    ("Copilot", "i", ["코파일럿", "コパイロット"]),
    ("Phi", "v", ["Phi"]),
    ("xAI", "c", ["xAI"]),
    ("Grok", "c", ["Grok"]),
    ("Grok", "i", ["그록", "グロック"]),
    ("Cohere", "c", ["Cohere"]),
    ("Cohere", "i", ["코히어"]),
    ("Command R", "i", ["Command R"]),
    ("HyperCLOVA", "i", ["HyperCLOVA", "하이퍼클로바", "클로바X"]),
    ("Naver", "i", ["Naver", "네이버"]),
    ("Kakao", "i", ["Kakao", "카카오"]),
    ("Upstage", "i", ["Upstage", "업스테이지"]),
    ("Solar", "v", ["Solar", "솔라"]),
    ("EXAONE", "i", ["Exaone", "엑사원"]),
    ("Yi", "v", ["Yi"]),
    ("01.AI", "i", ["01.AI", "零一万物"]),
    ("Zhipu", "i", ["Zhipu", "智谱", "지푸"]),
    ("GLM", "i", ["GLM", "ChatGLM", "智谱清言"]),
    ("Moonshot", "i", ["Moonshot AI", "月之暗面"]),
    ("Kimi", "c", ["Kimi"]),
    ("Kimi", "i", ["키미"]),
    ("Baichuan", "i", ["Baichuan", "바이촨", "百川"]),
    ("MiniMax", "c", ["MiniMax"]),
    ("MiniMax", "i", ["미니맥스", "稀宇"]),
]

_SEP = r"[\s\-_.·・]{0,2}"
_VERSION = rf"(?={_SEP}(?:\d|v\d|models?\b|모델|モデル|模型))"


def _pattern(form: str, mode: str) -> regex.Pattern:
    chars = [c for c in unicodedata.normalize("NFKC", form) if not regex.match(r"[\s\-_.·・]", c)]
    body = _SEP.join(regex.escape(c) for c in chars)
    left = ""
    if regex.match(r"[A-Za-z0-9]", chars[0]):
        left = r"(?<![A-Za-z0-9])"
    elif regex.match(r"\p{Hangul}", chars[0]):
        left = r"(?<!\p{Hangul})"
    right = r"(?![A-Za-z])" if regex.match(r"[A-Za-z0-9]", chars[-1]) else ""
    if mode == "v":
        right += _VERSION
    flags = 0 if mode == "c" else regex.IGNORECASE
    return regex.compile(left + body + right, flags)


Aliases = tuple[tuple[str, tuple[str, ...]], ...]  # (canonical name, surface forms), hashable for the cache


@lru_cache(maxsize=32)
def _compiled(extra: Aliases, defaults: bool) -> list[tuple[regex.Pattern, str]]:
    table = (VENDORS if defaults else []) + [(canon, "i", list(forms)) for canon, forms in extra]
    return [(_pattern(form, mode), canon) for canon, mode, forms in table for form in forms]


def _key(text: str) -> str:
    return regex.sub(r"[\s\-_.·・]", "", unicodedata.normalize("NFKC", text)).casefold()


def _spans(flat: str, extra: Aliases, defaults: bool) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), canon) for pat, canon in _compiled(extra, defaults) for m in pat.finditer(flat)]


def _pick(flat: str, hits: list[tuple[int, int, str]], allow: Iterable[str]) -> list[tuple[str, str]]:
    allowed = {_key(a) for a in allow}
    hits = sorted(hits, key=lambda h: (h[0], -(h[1] - h[0])))
    out: list[tuple[str, str]] = []
    end = -1
    for start, stop, canon in hits:  # longest match wins where names overlap ("ChatGPT" over "GPT")
        if start < end:
            continue
        end = stop
        found = flat[start:stop]
        if _key(canon) in allowed or _key(found) in allowed:
            continue
        if (found, canon) not in out:
            out.append((found, canon))
    return out


def find_denied(text: str, *, extra: Iterable[str] = (), allow: Iterable[str] = (),
                defaults: bool = True) -> list[tuple[str, str]]:
    """(matched text, canonical name) for each vendor/model name in `text`, in order of appearance.

    `extra` adds names (matched in any case, with the same spacing tolerance); `allow` exempts names,
    given either as a canonical name or as a surface form ("Llama" allows every Llama match);
    `defaults=False` searches for the `extra` names only.
    The matched text is a slice of the NFKC form of `text`.
    """
    flat = unicodedata.normalize("NFKC", normalize(text))
    names = tuple((e, (e,)) for e in extra if e.strip())
    return _pick(flat, _spans(flat, names, defaults), allow)


# ---- the looser matcher for lint: look-alike digits, typos, alias files ----------------------

# A digit between or next to letters stands for the letter it looks like ("0penAI", "G3mini", "L1ama");
# version numbers ("GPT-4", "Llama 3") stay untouched because a separator parts them from the name.
_LOOKALIKE_RE = regex.compile(r"(?<=[A-Za-z])[013]|[013](?=[A-Za-z])")
_LOOKALIKES = ({"0": "o", "1": "l", "3": "e"}, {"0": "o", "1": "i", "3": "e"})
# Typos are tried only against names that are no ordinary word and whose one-edit neighbours are not
# words either: "Claude" is one edit from "clause", "Naver" from "never", "Gemini"/"Mistral" are words.
FUZZY_NAMES = ("OpenAI", "ChatGPT", "Anthropic", "DeepSeek", "Microsoft", "Alibaba", "Baichuan",
               "HyperCLOVA", "Exaone", "Tongyi", "Google", "Mixtral", "Baidu", "Kakao", "Zhipu")
_NOT_TYPOS = frozenset({"goggle", "googly", "googol", "goggles", "bairn", "kayak"})
_WORD_RE = regex.compile(r"(?<![A-Za-z0-9])[A-Za-z][A-Za-z0-9]{4,}(?![A-Za-z0-9])")


def _fold_il(s: str) -> str:
    return s.casefold().replace("i", "l")  # capital I and lowercase l look the same in most fonts ("OpenAl")


def _typos(flat: str, names: list[str]) -> list[tuple[int, int, str]]:
    from rapidfuzz.distance import OSA

    keys = [(_fold_il(n), n) for n in names]
    hits = []
    for m in _WORD_RE.finditer(flat):
        word = m.group()
        w = _fold_il(word)
        if word.casefold() in _NOT_TYPOS:
            continue
        for key, canon in keys:
            # one edit (a transposition counts as one: "ChatGTP"); two for names of ten letters or more
            if word.casefold() != canon.casefold() and abs(len(w) - len(key)) <= 2 and OSA.distance(w, key) <= (1 if len(key) < 10 else 2):
                hits.append((m.start(), m.end(), canon))
                break
    return hits


def find_vendor_names(text: str, *, aliases: dict[str, list[str]] | None = None, allow: Iterable[str] = (),
                      defaults: bool = True, fuzzy: bool = True) -> list[tuple[str, str]]:
    """`find_denied` plus digit look-alikes, one-edit typos of distinctive names and an alias table.

    `aliases` maps a canonical name to its other spellings (from `load_deny_file`); they match like
    `find_denied`'s `extra` names. Returns (matched text, canonical name) like `find_denied`.
    """
    flat = unicodedata.normalize("NFKC", normalize(text))
    extra = tuple((c, (c, *a)) for c, a in (aliases or {}).items())
    hits = _spans(flat, extra, defaults)
    if _LOOKALIKE_RE.search(flat):
        for table in _LOOKALIKES:  # same length as flat, so spans index the original text
            hits += _spans(_LOOKALIKE_RE.sub(lambda m, t=table: t[m.group()], flat), extra, defaults)
    if fuzzy:
        names = (list(FUZZY_NAMES) if defaults else []) + [c for c, _ in extra if regex.fullmatch(r"[A-Za-z]{5,}", c)]
        hits += _typos(flat, names)
    return _pick(flat, hits, allow)


def load_deny_file(path: str | Path) -> dict[str, list[str]]:
    """Read an alias table: one name a line, or `canonical: alias, alias`; `#` starts a comment."""
    table: dict[str, list[str]] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        canon, _, rest = line.partition(":")
        if not canon.strip():
            raise ValueError(f"{path}:{n}: no canonical name before ':' in {line!r}; write 'Name: alias, alias'")
        table.setdefault(canon.strip(), []).extend(a.strip() for a in rest.split(",") if a.strip())
    return table
