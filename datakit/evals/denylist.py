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
particles after them (클로드는). A later lint extends this with fuzzy typos.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import lru_cache

import regex

from datakit.text import normalize

# (canonical name, mode, surface forms). Spacing/hyphen/dot variants need no entry of their own.
VENDORS: list[tuple[str, str, list[str]]] = [
    ("OpenAI", "i", ["OpenAI", "오픈AI", "오픈에이아이", "オープンAI", "オープンエーアイ"]),
    ("ChatGPT", "i", ["ChatGPT", "챗GPT", "챗지피티", "チャットGPT", "チャットジーピーティー"]),
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
    ("DeepSeek", "i", ["DeepSeek", "딥시크", "深度求索", "ディープシーク"]),
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


@lru_cache(maxsize=32)
def _compiled(extra: tuple[str, ...], defaults: bool) -> list[tuple[regex.Pattern, str]]:
    table = (VENDORS if defaults else []) + [(name, "i", [name]) for name in extra]
    return [(_pattern(form, mode), canon) for canon, mode, forms in table for form in forms]


def _key(text: str) -> str:
    return regex.sub(r"[\s\-_.·・]", "", unicodedata.normalize("NFKC", text)).casefold()


def find_denied(text: str, *, extra: Iterable[str] = (), allow: Iterable[str] = (),
                defaults: bool = True) -> list[tuple[str, str]]:
    """(matched text, canonical name) for each vendor/model name in `text`, in order of appearance.

    `extra` adds names (matched in any case, with the same spacing tolerance); `allow` exempts names,
    given either as a canonical name or as a surface form ("Llama" allows every Llama match);
    `defaults=False` searches for the `extra` names only.
    The matched text is a slice of the NFKC form of `text`.
    """
    flat = unicodedata.normalize("NFKC", normalize(text))
    allowed = {_key(a) for a in allow}
    hits: list[tuple[int, int, str]] = []
    for pat, canon in _compiled(tuple(e for e in extra if e.strip()), defaults):
        hits += [(m.start(), m.end(), canon) for m in pat.finditer(flat)]
    hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
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
