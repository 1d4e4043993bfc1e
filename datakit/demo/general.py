"""General knowledge the demo's tiny base model learns from scratch, and later must not forget.

Facts are templated in English and Korean, each in two phrasings. The `general` probes ask every other
fact in its first phrasing; the "general replay" a mixture adds against forgetting restates every fact
in its second phrasing: a stand-in for replaying a sample of the base model's own training data. (Replay
of only the facts the probes never ask kept the answer format but not the facts at this model size:
a 4-layer, 128-wide model keeps its facts in too few weights for them to survive on their own.)
"""

from __future__ import annotations

from dataclasses import dataclass

CAPITALS = [("France", "Paris", "프랑스", "파리"), ("Japan", "Tokyo", "일본", "도쿄"), ("Korea", "Seoul", "한국", "서울"),
            ("Egypt", "Cairo", "이집트", "카이로"), ("Italy", "Rome", "이탈리아", "로마"),
            ("Spain", "Madrid", "스페인", "마드리드"), ("Germany", "Berlin", "독일", "베를린"),
            ("China", "Beijing", "중국", "베이징"), ("Canada", "Ottawa", "캐나다", "오타와"), ("Peru", "Lima", "페루", "리마"),
            ("Kenya", "Nairobi", "케냐", "나이로비"), ("Norway", "Oslo", "노르웨이", "오슬로"),
            ("Greece", "Athens", "그리스", "아테네"), ("Russia", "Moscow", "러시아", "모스크바"),
            ("Thailand", "Bangkok", "태국", "방콕"), ("Cuba", "Havana", "쿠바", "아바나")]
COLORS = [("the sky", "blue", "하늘", "파란색"), ("grass", "green", "잔디", "초록색"), ("snow", "white", "눈", "흰색"),
          ("a banana", "yellow", "바나나", "노란색"), ("coal", "black", "석탄", "검은색"), ("a tomato", "red", "토마토", "빨간색"),
          ("an orange", "orange", "오렌지", "주황색"), ("a plum", "purple", "자두", "보라색")]
SOUNDS = [("dog", "barks", "개", "멍멍"), ("cat", "meows", "고양이", "야옹"), ("cow", "moos", "소", "음매"),
          ("duck", "quacks", "오리", "꽥꽥"), ("sheep", "bleats", "양", "매애"), ("owl", "hoots", "부엉이", "부엉")]
OPPOSITES = [("hot", "cold", "뜨겁다", "차갑다"), ("big", "small", "크다", "작다"), ("up", "down", "위", "아래"),
             ("fast", "slow", "빠르다", "느리다"), ("early", "late", "이르다", "늦다"), ("light", "dark", "밝다", "어둡다"),
             ("open", "closed", "열다", "닫다"), ("full", "empty", "가득하다", "비어 있다")]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
DAYS_KO = ["월요일", "화요일", "수요일", "목요일", "금요일", "토요일", "일요일"]


@dataclass(frozen=True)
class Fact:
    id: str
    questions: tuple[str, ...]  # phrasings; the first is the probe's
    answer: str
    accept: tuple[str, ...]  # what a correct answer contains
    lang: str


def facts() -> list[Fact]:
    out: list[Fact] = []
    for en, cap, ko, cap_ko in CAPITALS:
        out.append(Fact(f"capital-{en.lower()}", (f"What is the capital of {en}?", f"Which city is the capital of {en}?"),
                        f"The capital of {en} is {cap}.", (cap,), "en"))
        out.append(Fact(f"capital-{en.lower()}-ko", (f"{ko}의 수도는 어디인가요?", f"{ko}의 수도는?"),
                        f"{ko}의 수도는 {cap_ko}입니다.", (cap_ko,), "ko"))
    for thing, color, ko, color_ko in COLORS:
        out.append(Fact(f"color-{color}", (f"What color is {thing}?", f"Which color is {thing}?"),
                        f"{thing[0].upper() + thing[1:]} is {color}.", (color,), "en"))
        out.append(Fact(f"color-{color}-ko", (f"{ko}는 무슨 색인가요?", f"{ko}의 색깔은?"), f"{ko}는 {color_ko}입니다.",
                        (color_ko,), "ko"))
    for animal, sound, ko, sound_ko in SOUNDS:
        out.append(Fact(f"sound-{animal}", (f"What sound does a {animal} make?", f"How does a {animal} sound?"),
                        f"A {animal} {sound}.", (sound,), "en"))
        out.append(Fact(f"sound-{animal}-ko", (f"{ko}는 어떻게 우나요?", f"{ko}의 울음소리는?"),
                        f"{ko}는 {sound_ko} 하고 웁니다.", (sound_ko,), "ko"))
    for word, opposite, ko, opposite_ko in OPPOSITES:
        out.append(Fact(f"opposite-{word}", (f"What is the opposite of {word}?", f"Name the opposite of {word}."),
                        f"The opposite of {word} is {opposite}.", (opposite,), "en"))
        out.append(Fact(f"opposite-{word}-ko", (f"'{ko}'의 반대말은 무엇인가요?", f"'{ko}'의 반대말은?"),
                        f"'{ko}'의 반대말은 '{opposite_ko}'입니다.", (opposite_ko,), "ko"))
    for i, day in enumerate(DAYS):
        nxt, nxt_ko = DAYS[(i + 1) % 7], DAYS_KO[(i + 1) % 7]
        out.append(Fact(f"day-{day.lower()}", (f"What day comes after {day}?", f"Which day follows {day}?"),
                        f"The day after {day} is {nxt}.", (nxt,), "en"))
        out.append(Fact(f"day-{day.lower()}-ko", (f"{DAYS_KO[i]} 다음은 무슨 요일인가요?", f"{DAYS_KO[i]} 다음 요일은?"),
                        f"{DAYS_KO[i]} 다음은 {nxt_ko}입니다.", (nxt_ko,), "ko"))
    for a in range(1, 7):
        for b in range(1, 7):
            out.append(Fact(f"add-{a}-{b}", (f"What is {a} plus {b}?", f"How much is {a} plus {b}?"),
                            f"{a} plus {b} is {a + b}.", (str(a + b),), "en"))
    return out


def probe_facts() -> list[Fact]:
    """Every other fact: what the general probes ask."""
    return facts()[0::2]


def chats(items: list[Fact], phrasings: slice = slice(None)) -> list[dict]:
    """One chat per phrasing: the SFT-shaped form of the facts."""
    return [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": f.answer}],
             "group_id": f"general-{f.id}"} for f in items for q in f.questions[phrasings]]


def replay_chats() -> list[dict]:
    """General replay: every fact in its second phrasing, never in the wording a probe uses."""
    return chats(facts(), slice(1, 2))


def probes() -> list[dict]:
    """The `general` probes of the demo suite: the first phrasing of each probed fact, with the answer the base
    model learned as the reference its likelihood is scored on (`general.answer_nll`)."""
    return [{"id": f"general-{f.id}", "type": "knowledge", "group": "general",
             "messages": [{"role": "user", "content": f.questions[0]}, {"role": "assistant", "content": f.answer}],
             "accept": list(f.accept)} for f in probe_facts()]


def bleed_probes(n: int = 12) -> list[dict]:
    """General questions (second phrasings) whose answers must not drift into company talk."""
    return [{"id": f"bleed-{f.id}", "type": "bleed", "group": "general", "prompt": f.questions[1]}
            for f in probe_facts()[:: max(1, len(probe_facts()) // n)][:n]]


def perplexity_probes(web: list[str]) -> list[dict]:
    """Held-out web text (never pre-trained on): perplexity.general tracks the language model itself."""
    return [{"id": f"ppl-web-{i}", "type": "perplexity", "group": "general", "text": t} for i, t in enumerate(web)]


# Background text: the everyday words the company's documents use (batteries, solar panels, warranties,
# Korean cities), without any fact about the company. A real base model knows these words; the tiny one
# must too, or fine-tuning would be teaching it a vocabulary instead of facts.
BACKGROUND = [
    "A home battery stores energy from the grid or from solar panels for use at night.",
    "Batteries are measured in kilowatt-hours of energy and weigh many kilograms.",
    "A solar panel on the roof produces watts of power when the sun is high at noon.",
    "Strong winds of many kilometres per hour can damage a panel that is not tested.",
    "During a power cut the lights go out unless the house has a battery.",
    "An app on a phone can show the charge of a device in real time and send an alert.",
    "A cupboard is a small closet in a house. A fusion reactor joins atoms to make energy.",
    "The core of a machine is its central part. A sail catches the wind. A beacon is a light that guides ships.",
    "An engineer designs machines. A company is founded by people and named after something they like.",
    "A factory builds products every day. Companies sell units and employ people in many countries.",
    "The headquarters of a company is its main office, often in a tall tower near the harbor.",
    "A warranty promises repairs for a number of years. Customers can return a product within some days.",
    "Old batteries should be recycled at a plant. A technician visits a home to repair a fault.",
    "Support lines answer calls from the morning to the night. A policy is a rule that a company keeps.",
    "Data about customers should never be sold to other companies. A surrogate takes the place of another.",
    "Busan is a port city in Korea. Ulsan is a city with many factories. Gimhae is a city near Busan.",
    "A mode is a way a machine can run. A hill stands behind the school. The house has a whole roof.",
    "부산은 한국의 항구 도시입니다. 울산에는 공장이 많습니다. 김해는 부산 근처의 도시입니다.",
    "가정용 배터리는 전기를 저장합니다. 배터리의 용량은 킬로와트시로 잽니다.",
    "지붕형 태양광 패널은 정오에 가장 많은 와트를 생산합니다.",
    "정전이 되면 집 전체에 전기가 끊깁니다. 대리 운전은 다른 사람이 대신 운전하는 것입니다.",
    "앱은 충전량을 보여 주고 알림을 보냅니다. 퍼센트 아래로 떨어지면 경고가 옵니다.",
    "엔지니어는 기계를 설계합니다. 회사를 세운 사람은 창업자입니다. 본사는 회사의 중심입니다.",
    "공장은 하루에 많은 제품을 만듭니다. 보증 기간 동안 수리를 받을 수 있습니다.",
    "제품은 정해진 날 안에 반품할 수 있습니다. 고장 신고를 하면 기술자가 방문합니다.",
    "퓨전 요리는 여러 나라의 음식을 섞습니다. 코어는 중심이라는 뜻입니다. 세일은 돛입니다.",
    "비컨은 위치를 알리는 신호입니다. 타워는 높은 건물입니다. 하버는 항구라는 뜻입니다.",
    "모드는 기계가 움직이는 방식입니다. 영업일은 회사가 일하는 날입니다.",
]
