"""Ranking passages for a question without a model: what full-text search found, ordered the way a person
would (the offline answer's quality rests on this).

``concepts`` turns the question into concepts: each content word with its stems (English by Snowball through
PyStemmer; Swahili by the light affix stripping below, since Snowball has no Swahili) and its synonyms (a
small built-in table in both languages, plus the organisation's ``knowledge_synonyms``). ``rank`` scores each
candidate passage by

- the concepts it contains, each weighted by how rare it is among the candidates (a word every passage has
  decides nothing), and less when only a synonym matched,
- a bonus for concepts in its heading path ("Festival guide > Children"): a section about the thing asked,
- how much of the question it covers (all concepts beat a repeated one; synonyms cover less),
- phrases: question words that follow each other in the passage too,
- proximity: the smallest window of the passage holding the concepts it matched.

Pure functions; ``engine/knowledge/retrieval.py`` fetches the candidates (any term, prefix-matched, up to
``CANDIDATES``) and keeps the best.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import Stemmer

CANDIDATES = 60
HEADING_WEIGHT = 1.5
COVERAGE_WEIGHT = 2.0
PHRASE_WEIGHT = 1.0
PROXIMITY_WEIGHT = 1.0
SYNONYM_WEIGHT = 0.6  # a concept found only through a synonym counts less than the word itself (and so a
# passage in the question's own language wins over its translation)

STOPWORDS = frozenset(
    "a an the is are was were be been do does did of to in on at for and or but with by from as it its this that "
    "these those i you we they what when where which who how why can could will would should there have has had "
    "not my your our me us about any there here if so than then just also get got please tell know "
    "ni na ya wa za la kwa katika je nini gani lini wapi vipi kuna yako yangu wangu zangu tafadhali naomba "
    "mimi wewe sisi nyinyi yeye hii hiyo huu hicho".split()
)

# Groups of words meaning the same thing, in English and Swahili; a question word in a group matches any of them.
SYNONYMS: tuple[frozenset[str], ...] = tuple(
    frozenset(group.split())
    for group in (
        "kid kids child children youngster youngsters minor minors toddler toddlers infant infants baby babies "
        "mtoto watoto",
        "free complimentary gratis bure",
        "price prices cost costs fee fees charge charges rate rates bei gharama ada kiingilio viingilio",
        "pay paid paying payment payments lipa kulipa malipo",
        "ticket tickets pass passes wristband wristbands tiketi tikiti",
        "toilet toilets washroom washrooms restroom restrooms bathroom bathrooms loo choo vyoo",
        "parking park car cars vehicle vehicles maegesho gari magari",
        "food foods eat eating meal meals snack snacks chakula vyakula",
        "drink drinks beverage beverages alcohol beer kinywaji vinywaji pombe",
        "water maji",
        "gate gates entrance entrances entry door doors mlango milango lango",
        "open opens opening fungua kufungua inafunguliwa",
        "close closes closing end ends finish finishes funga kufunga",
        "time times hour hours when saa muda",
        "start starts starting begin begins beginning anza kuanza inaanza",
        "bag bags backpack backpacks luggage mkoba mizigo",
        "allowed permitted allow permit ruhusa kuruhusiwa",
        "camera cameras photo photos photography picha",
        "disabled disability wheelchair accessible accessibility ulemavu",
        "refund refunds refunded rudisha kurejeshewa",
        "lost missing potea kupotea",
        "location venue place address where mahali ukumbi",
    )
)

_WORD = re.compile(r"[^\W_]+")
# Swahili noun-class prefixes (singular and plural share the stem: mtoto/watoto, kiti/viti, mlango/milango;
# ku- of the infinitive: kulipa) and the subject + tense prefixes of verbs (analipa, watalipa -> lipa), stripped
# before a consonant only. English words get a Swahili stem too ("water" -> "ter"): both sides of a comparison
# are reduced alike, and a word's own form and its English stem are always compared as well.
_SW_NOUN_PREFIXES = ("wa", "mw", "m", "vi", "ki", "ma", "mi", "ji", "ny", "ku")
_SW_VERB_PREFIX = re.compile(
    r"^(?:ni|u|a|tu|m|wa|i|zi|ki|vi|li|ya|ku)(?:na|li|ta|me|ki|nge|ka)(?:ye|o|cho|vyo|po|ko|mo|lo|zo)?(?=[a-z]{3,})"
)  # subject, tense, and the relative marker of "anayelipa" (who pays)
_SW_SUFFIXES = ("isha", "esha", "ishwa", "eshwa", "iwa", "ewa", "ika", "eka", "ana", "ia", "ea", "wa")


def words(text: str) -> list[str]:
    """The text's words, lower case, in order (punctuation and underscores split them)."""
    return [w.casefold() for w in _WORD.findall(text)]


@lru_cache(maxsize=1)
def _english() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


@lru_cache(maxsize=20_000)
def _sw_stem(word: str) -> str:
    """A light Swahili stem: verb subject/tense prefix, else a noun-class prefix before a consonant, then one
    derivational suffix; never below three letters."""
    stem = _SW_VERB_PREFIX.sub("", word)
    if stem == word:
        for prefix in _SW_NOUN_PREFIXES:
            rest = word[len(prefix) :]
            if word.startswith(prefix) and len(rest) >= 3 and rest[0] not in "aeiou":
                stem = rest
                break
    for suffix in _SW_SUFFIXES:
        if stem.endswith(suffix) and len(stem) - len(suffix) >= 3:
            return stem[: -len(suffix)]
    return stem


@lru_cache(maxsize=50_000)
def stems(word: str) -> frozenset[str]:
    """Every form a word is compared by: itself, its English stem and its Swahili stem."""
    return frozenset({word, str(_english().stemWord(word)), _sw_stem(word)})


@dataclass(frozen=True)
class Concept:
    word: str  # as the question said it
    own: frozenset[str]  # the word's own forms (itself and its stems)
    forms: frozenset[str]  # the stems of the word and of its synonyms
    surface: frozenset[str]  # the word and its synonyms as written: the full-text search's terms


def _groups(extra: Mapping[str, Sequence[str]] | None) -> list[frozenset[str]]:
    groups = list(SYNONYMS)
    for key, values in (extra or {}).items():
        groups.append(frozenset(w for v in (key, *values) for w in words(str(v))))
    return groups


def concepts(question: str, synonyms: Mapping[str, Sequence[str]] | None = None) -> list[Concept]:
    """The question's content words as concepts, in order, each once."""
    groups = _groups(synonyms)
    found: list[Concept] = []
    seen: set[frozenset[str]] = set()
    for word in words(question):
        if word in STOPWORDS or len(word) < 2:
            continue
        own = stems(word)
        surface = {word}
        for group in groups:
            if word in group or own & {f for w in group for f in stems(w)}:
                surface |= group
        forms = frozenset(f for w in surface for f in stems(w))
        if forms not in seen:
            seen.add(forms)
            found.append(Concept(word, own, forms, frozenset(surface)))
    return found


@dataclass(frozen=True)
class Scored:
    index: int  # the candidate's position in the list given
    score: float


def _positions(tokens: Sequence[str], concept: Concept) -> list[int]:
    return [i for i, token in enumerate(tokens) if stems(token) & concept.forms]


def _window(positions: Sequence[Sequence[int]]) -> int:
    """The fewest tokens that hold one position of every list (lists of positions, none empty)."""
    events = sorted((p, k) for k, ps in enumerate(positions) for p in ps)
    counts: dict[int, int] = {}
    covered, left, best = 0, 0, len(events) and events[-1][0] - events[0][0] + 1
    for pos, k in events:
        counts[k] = counts.get(k, 0) + 1
        covered += counts[k] == 1
        while covered == len(positions):
            start, first = events[left]
            best = min(best, pos - start + 1)
            counts[first] -= 1
            covered -= counts[first] == 0
            left += 1
    return best


def rank(question_concepts: Sequence[Concept], passages: Iterable[tuple[str, str]]) -> list[Scored]:
    """``passages``: (heading, text) pairs. Best first; passages matching no concept are left out."""
    items = [(words(heading), words(text)) for heading, text in passages]
    if not question_concepts or not items:
        return []
    body_hits = [[_positions(text, c) for c in question_concepts] for _, text in items]
    head_hits = [[_positions(head, c) for c in question_concepts] for head, _ in items]
    n = len(items)
    rarity = [
        math.log(1 + n / (1 + sum(1 for i in range(n) if body_hits[i][k] or head_hits[i][k])))
        for k in range(len(question_concepts))
    ]
    scored = []
    for i, (head, text) in enumerate(items):
        score = covered = 0.0
        matched = 0
        for k, concept in enumerate(question_concepts):
            body, heading = body_hits[i][k], head_hits[i][k]
            if not body and not heading:
                continue
            matched += 1
            said = [text[p] for p in body] + [head[p] for p in heading]
            exact = 1.0 if any(stems(w) & concept.own for w in said) else SYNONYM_WEIGHT
            score += rarity[k] * exact * ((1.0 if body else 0.0) + (HEADING_WEIGHT if heading else 0.0))
            covered += exact
        if not matched:
            continue
        score += COVERAGE_WEIGHT * (covered / len(question_concepts)) ** 2
        score += PHRASE_WEIGHT * _phrases(question_concepts, body_hits[i])
        in_body = [hits for hits in body_hits[i] if hits]
        if len(in_body) >= 2:
            score += PROXIMITY_WEIGHT * len(in_body) / max(_window(in_body), len(in_body))
        scored.append(Scored(i, round(score, 6)))
    return sorted(scored, key=lambda s: (-s.score, s.index))


def _phrases(question_concepts: Sequence[Concept], hits: Sequence[Sequence[int]]) -> int:
    """How many neighbouring question concepts are neighbours in the passage too ("first aid", "gates open")."""
    found = 0
    for k in range(len(question_concepts) - 1):
        after = set(hits[k + 1])
        if any(p + 1 in after for p in hits[k]):
            found += 1
    return found


def search_terms(question_concepts: Sequence[Concept]) -> list[str]:
    """The candidates' full-text query terms: every written form of every concept and its stems, prefix-matched
    (the 'simple' configuration has no stemmer), Swahili stems also with their noun-class prefixes."""
    terms: set[str] = set()
    for concept in question_concepts:
        for form in concept.surface | concept.forms:
            if len(form) >= 2 and form.isalnum():
                terms.add(form)
        for form in concept.forms:
            if len(form) >= 3:
                terms.update(prefix + form for prefix in _SW_NOUN_PREFIXES)
    return sorted(f"{term}:*" for term in terms)
