"""datakit.text: normalize, segmentation, language guess, tokens and shingles; Python and polars agree."""

from __future__ import annotations

import functools
import json
import unicodedata
from pathlib import Path

import polars as pl
import pytest
import regex

from datakit.text import (
    TOKEN_RE,
    guess_lang,
    normalize,
    normalize_expr,
    segment_paragraphs,
    segment_sentences,
    shingles,
    tokens,
    tokens_expr,
)

# Small texts that hit every rule: scripts, accents (composed and not), emoji, digits, odd spaces and controls.
VARIED = [
    "",
    "   ",
    "Hello, World! It's 3.14 o'clock.",
    "오늘은 날씨가 좋습니다. 내일도 맑을까요?",
    unicodedata.normalize("NFD", "한국어 텍스트입니다"),
    "今天天气很好。我们去公园吧！",
    "ラーメンは美味しい、本当に。東京タワー",
    "ｱｲｳｴｵ ＡＢＣ １２３ 々〆ヽ",
    "mixed 한국어 and 中文 and にほんご 2024年",
    "café naïve cafe\u0301 Ångström İstanbul ΟΔΟΣ Straße",
    "Привет, мир! Ελληνικά हिन्दी ไทย עברית العربية",
    "emoji 😀👍🏽 ❤️ #hashtag @user snake_case CamelCase",
    "a\u200bb\u200cc\u200dd\u2060e\ufefff\u00adg",
    "tab\tand\u00a0nbsp\u3000ideographic\u2003em\u202fnarrow",
    "ctrl\x00\x07\x1b[0m\x7f\x9bend",
    "line\r\nwindows\rmac\x0bvt\x0cff\x85nel\u2028ls\u2029ps",
    "  lead and trail  \n\n\n\n  next paragraph \t \n \n\n x  ",
    "v1.2 U.S.A. e.g. i.e. 3,000.50 $12 50% a-b a_b",
]


@functools.lru_cache(maxsize=1)
def _real_texts(external: Path) -> tuple[str, ...]:
    """Every text field of the real files, read in place (cached: several tests walk them)."""
    texts: list[str] = []
    for name in ("alpaca_en_demo.json", "alpaca_zh_demo.json"):
        for row in json.loads((external / name).read_text(encoding="utf-8")):
            texts += [row["instruction"], row["input"], row["output"]]
    texts += (external / "wiki_demo.txt").read_text(encoding="utf-8").split("\n")
    with open(external / "c4_demo.jsonl", encoding="utf-8") as f:
        texts += [json.loads(line)["text"] for line in f]
    return tuple(texts)


@pytest.fixture
def corpus(external: Path) -> list[str]:
    return VARIED + list(_real_texts(external))


def _column(texts: list[str], expr_fn) -> list:
    return pl.DataFrame({"t": texts}).select(expr_fn(pl.col("t"))).to_series().to_list()


# ---- normalize ----------------------------------------------------------------------------


def test_nfd_hangul_from_macos_comes_back_as_nfc():
    nfd = unicodedata.normalize("NFD", "한국어")
    assert nfd != "한국어" and len(nfd) == 8
    assert normalize(nfd) == "한국어"
    assert _column([nfd], normalize_expr) == ["한국어"]


def test_zero_width_and_control_characters_are_removed():
    assert normalize("a\u200bb\u200cc\u200dd\u2060e\ufefff") == "abcdef"
    assert normalize("ctrl\x00\x07\x1b\x7f\x9bend") == "ctrlend"
    assert normalize("keep\ttab\nand newline") == "keep tab\nand newline"


def test_an_invisible_character_between_a_letter_and_its_accent_does_not_stop_composition():
    assert normalize("e\u200b\u0301") == "\u00e9"


def test_line_endings_and_line_separators_become_newlines():
    assert normalize("a\r\nb\rc\x0bd\x0ce\x85f\u2028g") == "a\nb\nc\nd\ne\nf\ng"
    assert normalize("para one\u2029para two") == "para one\n\npara two"


def test_unicode_spaces_and_tabs_collapse_to_one_space_and_lines_are_stripped():
    assert normalize("a\u00a0\u3000\u2003\t  b\u202fc") == "a b c"
    assert normalize("  first  \n\t second\t\n") == "first\nsecond"


def test_three_or_more_newlines_become_one_paragraph_break():
    assert normalize("one\n\n\n\ntwo\n \n\t\n \nthree\n\nfour") == "one\n\ntwo\n\nthree\n\nfour"


def test_normalize_is_idempotent_on_real_data(corpus):
    once = [normalize(t) for t in corpus]
    assert [normalize(t) for t in once] == once


def test_normalize_expr_gives_exactly_normalize_on_varied_and_real_text(corpus):
    assert _column(corpus, normalize_expr) == [normalize(t) for t in corpus]


def test_normalize_expr_keeps_nulls():
    assert pl.DataFrame({"t": ["x ", None]}).select(normalize_expr(pl.col("t")))["t"].to_list() == ["x", None]


# ---- paragraphs and sentences -------------------------------------------------------------


def test_paragraphs_split_on_blank_lines_and_drop_empty_ones():
    text = "\n\nFirst para\nstill first.\n\n \n\n\nSecond para.\r\n\r\nThird.\n\n"
    assert segment_paragraphs(text) == ["First para\nstill first.", "Second para.", "Third."]
    assert segment_paragraphs(" \n\n ") == []


@pytest.mark.parametrize("text, want", [
    ("오늘은 날씨가 좋습니다. 내일도 맑을까요? 네, 맑을 거예요.",
     ["오늘은 날씨가 좋습니다.", "내일도 맑을까요?", "네, 맑을 거예요."]),
    ("가격은 3.5달러입니다.", ["가격은 3.5달러입니다."]),
    ("정말 그렇죠. 감사합니다! 다음에 봬요.", ["정말 그렇죠.", "감사합니다!", "다음에 봬요."]),
    ("1. 첫째 항목입니다. 2. 둘째 항목입니다.", ["1. 첫째 항목입니다.", "2. 둘째 항목입니다."]),
    ("어제 샀다. iPhone은 좋다.", ["어제 샀다.", "iPhone은 좋다."]),
    ("띄어쓰기를 안 했다.그래도 나뉜다.", ["띄어쓰기를 안 했다.", "그래도 나뉜다."]),
    ("Dr. 김이 왔어요. 반가워요.", ["Dr. 김이 왔어요.", "반가워요."]),
])
def test_korean_sentences_split_on_their_endings(text, want):
    assert segment_sentences(text) == want


@pytest.mark.parametrize("text, want", [
    ("Mr. Smith met Dr. Jones at noon. They talked.", ["Mr. Smith met Dr. Jones at noon.", "They talked."]),
    ("Pi is 3.14 and v1.2 shipped. It works.", ["Pi is 3.14 and v1.2 shipped.", "It works."]),
    ("J. R. R. Tolkien wrote it. So did I. Then he left.", ["J. R. R. Tolkien wrote it.", "So did I.", "Then he left."]),
    ("The U.S. Army and the U.K. Navy met, e.g. in Fig. 3 of Acme Inc. reports.",
     ["The U.S. Army and the U.K. Navy met, e.g. in Fig. 3 of Acme Inc. reports."]),
    ("Mrs. Lee, Prof. Kim, St. Paul, i.e. Sr. and Jr. staff at 9 a.m. and 5 p.m. Daily.",
     ["Mrs. Lee, Prof. Kim, St. Paul, i.e. Sr. and Jr. staff at 9 a.m. and 5 p.m. Daily."]),
    ("It was cats vs. Dogs, etc. Then Ltd. Firms came.", ["It was cats vs. Dogs, etc.", "Then Ltd. Firms came."]),
    ("He moved to the U.S. The rest is history.", ["He moved to the U.S.", "The rest is history."]),
    ("See No. 5 here. No. I refuse.", ["See No. 5 here.", "No.", "I refuse."]),
    ("We counted 25. The rest left.", ["We counted 25.", "The rest left."]),
    ("In Brown v. Board (p. 137) it ended. Next.", ["In Brown v. Board (p. 137) it ended.", "Next."]),
    ('He said "Hi." Then he left.', ['He said "Hi."', "Then he left."]),
    ("She asked (why?) and went. (It rained.) Ok.", ["She asked (why?) and went.", "(It rained.)", "Ok."]),
    ("“Really?” she asked. “Yes!” He nodded.", ["“Really?” she asked.", "“Yes!”", "He nodded."]),
    ("Is it? Yes! It is... 42 is the answer.", ["Is it?", "Yes!", "It is...", "42 is the answer."]),
    ("lower case. after a stop stays together.", ["lower case. after a stop stays together."]),
    ("a lost space in socialism.Humans lived. Node.js works.", ["a lost space in socialism.", "Humans lived.", "Node.js works."]),
    ("First line\nSecond line. Third.\n\nFourth", ["First line", "Second line.", "Third.", "Fourth"]),
])
def test_english_sentences_keep_abbreviations_decimals_initials_and_quotes(text, want):
    assert segment_sentences(text) == want


@pytest.mark.parametrize("text, want", [
    ("今天天气很好。我们去公园吧！你来吗？", ["今天天气很好。", "我们去公园吧！", "你来吗？"]),
    ("他说：“你好。”然后走了。", ["他说：“你好。”", "然后走了。"]),
    ("版本是v1.2。价格3.5元！", ["版本是v1.2。", "价格3.5元！"]),
    ("今日は晴れです。明日も晴れるでしょう。", ["今日は晴れです。", "明日も晴れるでしょう。"]),
    ("円周率は３．１４です．本当？はい！", ["円周率は３．１４です．", "本当？", "はい！"]),
    ("「行こう！」と彼は言った。", ["「行こう！」", "と彼は言った。"]),
])
def test_chinese_and_japanese_split_on_full_stops_without_spaces(text, want):
    assert segment_sentences(text) == want


def test_halfwidth_marks_between_cjk_characters_split_only_in_chinese_or_japanese():
    assert segment_sentences("你好!我是学生?是的") == ["你好!", "我是学生?", "是的"]
    assert segment_sentences("你好!我是学生", lang="en") == ["你好!我是学生"]
    assert segment_sentences("Yahoo!ジャパン", lang="ja") == ["Yahoo!ジャパン"]


def test_an_unknown_lang_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="unknown lang 'kr'; use one of ko, ja, zh, en, other"):
        segment_sentences("안녕.", lang="kr")


def test_segmentation_loses_and_invents_no_characters_on_real_data(corpus):
    for text in corpus:
        sentences = segment_sentences(text)
        assert all(s and s == s.strip(" ") and "\n" not in s for s in sentences)
        assert "".join(sentences).replace(" ", "") == regex.sub(r"[ \n]", "", normalize(text))


def test_real_wiki_text_splits_into_many_sentences_and_keeps_abbreviations(external):
    article = (external / "wiki_demo.txt").read_text(encoding="utf-8").split("\n")[0]
    sentences = segment_sentences(article)
    assert len(sentences) > 100
    assert sentences[0].startswith("Anarchism is a political philosophy") and sentences[0].endswith("hierarchy.")
    assert not any(s.endswith((" e.g.", " i.e.", " Mr.", " Dr.", " v.", " U.S.")) for s in sentences)


# ---- language guess -----------------------------------------------------------------------


@pytest.mark.parametrize("text, want", [
    ("오늘은 날씨가 좋습니다.", "ko"),
    ("오늘 iPhone 15 Pro를 샀다", "ko"),
    ("今日は晴れです。", "ja"),
    ("コーヒー", "ja"),
    ("今天天气很好。", "zh"),
    # Chinese naming Japanese artists (as in alpaca_zh): 7 kana among 44 CJK letters
    ("这里有一些当前和过去在日本流行的音乐艺术家的名字：宇多田光，椎名林檎，米津玄师，还有サカナクション。",
     "zh"),
    ("The weather is nice today.", "en"),
    ("the word 中国 means China", "en"),
    ("Привет, мир!", "other"),
    ("12345 !?", "other"),
    ("", "other"),
])
def test_guess_lang_reads_the_script_counts(text, want):
    assert guess_lang(text) == want


def test_guess_lang_on_real_data_finds_english_and_chinese(external):
    en = [r["output"] for r in json.loads((external / "alpaca_en_demo.json").read_text(encoding="utf-8"))]
    zh = [r["output"] for r in json.loads((external / "alpaca_zh_demo.json").read_text(encoding="utf-8"))]
    assert sum(guess_lang(t) == "en" for t in en) / len(en) > 0.99
    # the rest of alpaca_zh is code or English answers
    assert sum(guess_lang(t) == "zh" for t in zh) / len(zh) > 0.95


# ---- tokens and shingles ------------------------------------------------------------------


def test_each_cjk_character_is_a_token_and_other_letter_runs_are_one():
    assert tokens("Hello, World! 3.14") == ["hello", "world", "3", "14"]
    assert tokens("한국어 中文 ラーメン") == ["한", "국", "어", "中", "文", "ラ", "ー", "メ", "ン"]
    assert tokens("café naïve Straße ΟΔΟΣ Привет") == ["café", "naïve", "straße", "οδος", "привет"]
    assert tokens("mixed2024年 हिन्दी") == ["mixed2024", "年", "हिन्दी"]
    assert tokens("😀 ❤️ -- ... _ #") == []


def test_token_regex_matches_identically_in_python_and_polars(corpus):
    python = [regex.findall(TOKEN_RE, t, flags=regex.V1) for t in corpus]
    assert _column(corpus, lambda e: e.str.extract_all(TOKEN_RE)) == python


def test_tokens_expr_gives_exactly_tokens(corpus):
    assert _column(corpus, tokens_expr) == [tokens(t) for t in corpus]


def test_english_shingles_are_word_n_grams():
    assert shingles("The quick brown fox jumps over", n=3) == [
        "the quick brown", "quick brown fox", "brown fox jumps", "fox jumps over",
    ]


def test_chinese_shingles_are_character_n_grams():
    assert shingles("今天天气很好。", n=5) == ["今 天 天 气 很", "天 天 气 很 好"]


def test_a_short_text_gives_one_shingle_and_an_empty_one_none():
    assert shingles("Hello there!", n=5) == ["hello there"]
    assert shingles("...  ", n=5) == []
    assert shingles("", n=5) == []
    with pytest.raises(ValueError, match="n=0"):
        shingles("text", n=0)


def test_normalize_series_gives_exactly_normalize_and_skips_clean_rows(corpus):
    from datakit.text import normalize_series

    series = pl.Series(corpus, dtype=pl.String)
    assert normalize_series(series).to_list() == [normalize(t) for t in corpus]
    clean = pl.Series(["already clean text", "한국어 문장"])
    assert normalize_series(clean).to_list() == ["already clean text", "한국어 문장"]
