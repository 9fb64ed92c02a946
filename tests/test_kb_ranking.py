"""The offline answer (no model): full-text candidates ranked by headings, coverage, phrases, proximity, English
and Swahili stems and synonyms. A small festival guide and the questions people ask, with the section each
should be answered from; pure ranking first, then the same through PostgreSQL's full-text candidates."""

from __future__ import annotations

import pytest

from engine.db import tenant_tx
from engine.knowledge import ranking
from engine.knowledge.chunking import chunk_text
from engine.knowledge.ingest import ingest
from engine.knowledge.retrieval import by_text

GUIDE = """# Festival guide

## Gates and times
Gates open at 4 pm on Saturday and Sunday. The first act starts at 5 pm and the last one ends at 11 pm.
Re-entry is allowed once with your wristband.

## Tickets and prices
Regular tickets cost KES 1,500 and VIP tickets KES 5,000. Pay with M-Pesa on WhatsApp; tickets bought at the
gate cost KES 2,000. Tickets are not refunded unless the festival is cancelled.

## Food and drinks
Food stalls open at noon and sell nyama choma, pilau and vegetarian meals. Water is free at the refill stations
near the main stage. Alcohol is sold to guests over 18 only.

## Children
Children under 12 enter free with a paying adult. Kids must wear a wristband with a parent's phone number.
There is a play area next to the family tent.

## Parking
Parking costs KES 300 per car at the Carnivore grounds. Boda bodas drop off at the north gate.

## Toilets and first aid
Toilets are behind the food court and near the VIP area. First aid is at the red tent by the main stage.

## Bags and cameras
Small bags are allowed and searched at the gate. Professional cameras need a media pass.

## Watoto
Watoto chini ya miaka 12 wanaingia bure wakiwa na mzazi anayelipa.

## Maegesho
Bei ya maegesho ya gari moja ni KES 300 katika uwanja wa Carnivore.
"""

CASES = [
    ("are kids free?", "Children"),
    ("Do children pay?", "Children"),
    ("is there a play area for my toddler", "Children"),
    ("What time do gates open?", "Gates and times"),
    ("when does the first act start", "Gates and times"),
    ("how much is a VIP ticket", "Tickets and prices"),
    ("can I get a refund", "Tickets and prices"),
    ("is water free", "Food and drinks"),
    ("where can I eat", "Food and drinks"),
    ("how much does parking cost", "Parking"),
    ("where are the washrooms", "Toilets and first aid"),
    ("where is first aid", "Toilets and first aid"),
    ("can I bring my camera", "Bags and cameras"),
    ("Je, watoto wanalipa?", "Watoto"),
    ("mtoto analipa kiingilio?", "Watoto"),
    ("maegesho ya gari ni bei gani", "Maegesho"),
]


def sections() -> list[tuple[str, str]]:
    return [(c.heading.rsplit(" > ", 1)[-1], c.content.split("\n", 1)[1]) for c in chunk_text(GUIDE)]


@pytest.mark.parametrize(("question", "section"), CASES)
def test_the_section_that_answers_comes_first(question: str, section: str) -> None:
    found = sections()
    best = ranking.rank(ranking.concepts(question), found)
    assert best and found[best[0].index][0] == section, [(found[s.index][0], s.score) for s in best[:3]]


@pytest.mark.parametrize(
    ("word", "stem"),
    [
        ("watoto", "toto"),
        ("mtoto", "toto"),
        ("wanalipa", "lipa"),
        ("kulipa", "lipa"),
        ("milango", "lango"),
        ("mlango", "lango"),
        ("vitabu", "tabu"),
        ("kitabu", "tabu"),
        ("maji", "maji"),
        ("ni", "ni"),
    ],
)
def test_swahili_stems(word: str, stem: str) -> None:
    assert ranking._sw_stem(word) == stem


def test_english_stems_synonyms_and_an_organisations_own_synonyms() -> None:
    (kids,) = ranking.concepts("kids")
    assert {"child", "children", "watoto"} <= kids.surface
    (opening,) = ranking.concepts("opening")
    assert "open" in opening.forms
    (gold,) = ranking.concepts("gold", {"vip": ["gold", "premium"]})
    assert "vip" in gold.surface
    assert ranking.concepts("what is it?") == []  # nothing but stop words


def test_phrase_and_proximity_break_a_tie_of_words() -> None:
    apart = ("A", "First we open the doors. Aid workers sit at the back, far from anything.")
    together = ("B", "First aid is at the red tent.")
    best = ranking.rank(ranking.concepts("first aid"), [apart, together])
    assert [b.index for b in best] == [1, 0]


def test_the_full_text_terms_reach_the_other_forms() -> None:
    terms = ranking.search_terms(ranking.concepts("mtoto"))
    assert "watoto:*" in terms and "mtoto:*" in terms and "children:*" in terms


async def test_through_postgresql_the_offline_answer_finds_the_section(app_pool, make_org, tmp_path) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Ranking")
    (tmp_path / "guide.md").write_text(GUIDE)
    await ingest(app_pool, org, "guide", [str(tmp_path / "guide.md")], None)
    async with tenant_tx(app_pool, org) as conn:
        for question, section in CASES:
            passages = await by_text(conn, question)
            assert passages and passages[0].heading.endswith(section), (
                question,
                [p.heading for p in passages],
            )
        vip = await by_text(conn, "gold pass price", synonyms={"vip": ["gold"]})
        assert vip[0].heading.endswith("Tickets and prices")
