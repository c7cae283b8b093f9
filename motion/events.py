"""Event decomposition of motion captions and the chronological shuffle (CAR).

A caption such as "a person walks forward, then turns around and sits down" describes three
events in order. The CAR paper obtains events from an LLM; trimo ships a rule-based decomposer
for the patterns of HumanML3D-style captions (sequence words "then", "after that", "and then",
"followed by", "first ... finally ...", "before"/"after" clauses that reorder, comma and "and"
lists of verb phrases) and lets an external command replace it (see `tools/decompose_events.py`).

Conventions (what the tests pin down):
- An event is a verb phrase in the third person present, without the subject and without
  trailing punctuation: "walks forward", "turns around". Gerund clauses are conjugated
  ("after sitting down" -> "sits down"); "followed by a jump" becomes "does a jump".
- Actions joined by "while", "as", "as if", "whilst", "at the same time" happen together and stay one event.
- The subject ("a person", "the man", "someone", ...) is kept once, beside the events.
- What a shard stores (meta.texts[].events) are the event *sentences*: each event with the
  subject ("a person" when the caption has none): "a person walks forward". Captions are
  decomposed once, when a dataset is converted or the demo corpus is built; training and
  evaluation read the stored sentences.
- Concatenated events (the CAR paper's "event" texts, `event_text`) are those sentences, each
  closed by a period: "a person walks forward. a person turns around."
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

# Base forms of verbs that start an event clause in motion captions.
_VERBS = """
walk run jog sprint jump hop skip leap step stride march stroll limp shuffle sneak tiptoe crawl climb
turn spin rotate twist pivot circle swivel sit stand squat crouch kneel lie lay bend lean stretch
reach raise lift lower drop put place pick grab take hold carry throw toss catch kick punch hit strike
push pull wave clap swing shake nod bow salute point touch scratch rub wipe dance twirl slide fall stumble
trip roll get rise bounce balance pace move go come return back wander run skate swim fly flap wobble
sway rock look glance stop pause rest wait stay remain brace duck dodge dive lunge stomp stamp tap
pretend mimic perform do make play begin start continue proceed finish end keep repeat open close
fold cross extend hug celebrate cheer jumpjack bring hand pour drink eat wash brush comb throw shoot
aim swat flail land slow speed hurry crouch slouch straighten shrug grasp wrap clean sweep mop dig paddle row jab uppercut
""".split()

_SUBJECT_RE = re.compile(
    r"^(?:(?:a|an|the|this|that)\s+)?(?:(?:young|old|tall|short|standing|sitting)\s+)?"
    r"(?:person|man|woman|human|figure|individual|guy|lady|boy|girl|character|someone|somebody|he|she|they|it|subject|people)\b",
    re.I,
)
_TOGETHER = re.compile(r"\b(?:while|whilst|as if|as though|as|at the same time as|simultaneously)\b", re.I)


def _third_person(base: str) -> str:
    if base == "do":
        return "does"
    if base == "go":
        return "goes"
    if re.search(r"(?:s|sh|ch|x|z)$", base):
        return base + "es"
    if re.search(r"[^aeiou]y$", base):
        return base[:-1] + "ies"
    return base + "s"


def _gerund(base: str) -> str:
    special = {"lie": "lying", "die": "dying", "tie": "tying", "be": "being"}
    if base in special:
        return special[base]
    if base.endswith("ee"):
        return base + "ing"
    if base.endswith("e"):
        return base[:-1] + "ing"
    # Doubled final consonant for short CVC verbs (run -> running, sit -> sitting).
    if re.fullmatch(r"[^aeiou]*[aeiou][bdgklmnprt]", base) and base not in {"open"}:
        return base + base[-1] + "ing"
    return base + "ing"


_FINITE = {_third_person(v): v for v in _VERBS}
_FINITE.update({v: v for v in _VERBS})  # base forms ("they walk", imperatives)
_FINITE.update({"is": "is", "starts": "start", "begins": "begin"})
_GERUNDS = {_gerund(v): v for v in _VERBS}

_SEQ_SPLIT = re.compile(
    r"\s*(?:,\s*|\s+)(?:and\s+then|and\s+after\s+that|after\s+that|afterwards|afterward|then|"
    r"and\s+finally|finally|next|and\s+lastly|lastly|subsequently|later|eventually)\s*,?\s+",
    re.I,
)
_FOLLOWED = re.compile(r"\s*,?\s+(?:and\s+)?(?:is\s+)?followed\s+by\s+", re.I)
_LEADING_ORDER = re.compile(
    r"^(?:first(?:ly)?|at\s+first|initially|to\s+begin(?:\s+with)?|then|and\s+then|after\s+that|afterwards?|"
    r"next|finally|lastly|later|eventually)\s*,?\s+",
    re.I,
)
_SENTENCES = re.compile(r"\s*[.;!]+\s*")


@dataclass
class Decomposition:
    """A caption split into its events, in the order they happen."""

    caption: str
    subject: str
    events: list[str] = field(default_factory=list)

    @property
    def n_events(self) -> int:
        return len(self.events)

    @property
    def sentences(self) -> list[str]:
        """The events with the subject: what meta.texts[].events stores."""
        subject = self.subject or "a person"
        return [f"{subject} {e}" for e in self.events]


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip(",.;: ")).strip()


def _first_word(text: str) -> str:
    m = re.match(r"\s*([a-zA-Z'-]+)", text)
    return m.group(1).lower() if m else ""


_ADVERBS = {"slowly", "quickly", "then", "again", "also", "carefully", "suddenly", "briefly"}


def _starts_with_verb(text: str) -> bool:
    words = text.split()
    while words and words[0].lower() in _ADVERBS:  # "quickly runs back"
        words = words[1:]
    w = _first_word(words[0]) if words else ""
    return w in _FINITE or w in _GERUNDS


def _finite(phrase: str) -> str:
    """Conjugate a leading gerund ("sitting down" -> "sits down"); verb-ify a noun phrase."""
    phrase = _clean(phrase)
    w = _first_word(phrase)
    if w in _GERUNDS:
        return _third_person(_GERUNDS[w]) + phrase[len(w):]
    if w in _FINITE or not phrase:
        return phrase
    if w in {"a", "an", "the", "some", "two", "three", "several", "another"}:
        return "does " + phrase
    return phrase


def _split_subject(sentence: str) -> tuple[str, str]:
    m = _SUBJECT_RE.match(sentence)
    if m:
        return m.group(0), sentence[m.end():].strip()
    return "", sentence


def _split_sequence(clause: str) -> list[str]:
    """Split a clause on sequence words, 'followed by', ', <verb>' and 'and <verb>'."""
    parts: list[str] = []
    for piece in _SEQ_SPLIT.split(clause):
        for sub in _FOLLOWED.split(piece):
            parts.extend(_split_lists(sub))
    return [p for p in (_clean(p) for p in parts) if p]


def _split_lists(text: str) -> list[str]:
    """'walks, turns, and sits' / 'walks and sits' -> separate events when each part starts with a verb."""
    tokens = re.split(r"(\s*,\s*(?:and\s+)?|\s+and\s+)", text)
    out = [tokens[0]]
    for sep, part in zip(tokens[1::2], tokens[2::2]):
        if _starts_with_verb(part) and not _TOGETHER.search(out[-1].split()[-1] if out[-1].split() else ""):
            out.append(part)
        else:
            out[-1] = out[-1] + sep + part
    return out


def _reorder_before_after(clause: str) -> list[str] | None:
    """'X before Y' -> [X, Y]; 'X after Y' -> [Y, X]; 'before Y, X' -> [X, Y]; 'after Y, X' -> [Y, X]."""
    m = re.match(r"^(before|after)\s+(.+?)\s*,\s*(.+)$", clause, re.I)
    if m:
        word, first, second = m.group(1).lower(), m.group(2), m.group(3)
        return [second, first] if word == "before" else [first, second]
    m = re.match(r"^(.+?)\s*,?\s+(before|after)\s+(?!that\b)(.+)$", clause, re.I)
    if m and _starts_with_verb(m.group(3)):
        a, word, b = m.group(1), m.group(2).lower(), m.group(3)
        return [a, b] if word == "before" else [b, a]
    return None


def decompose(caption: str) -> Decomposition:
    """Split a caption into ordered events (rule-based). Never fails: unknown forms give one event."""
    text = caption.strip()
    subject = ""
    events: list[str] = []
    for sentence in (s for s in _SENTENCES.split(text) if s.strip()):
        sent_subject, rest = _split_subject(_LEADING_ORDER.sub("", sentence.strip()))
        if sent_subject and not subject:
            subject = sent_subject
        rest = _LEADING_ORDER.sub("", rest)
        # "before/after" may reorder whole sequences on either side.
        ordered = _reorder_before_after(rest) or [rest]
        for chunk in ordered:
            chunk = _LEADING_ORDER.sub("", _clean(chunk))
            chunk_subject, chunk = _split_subject(chunk)
            if chunk_subject and not subject:
                subject = chunk_subject
            events.extend(_finite(p) for p in _split_sequence(chunk))
    return Decomposition(caption=caption, subject=subject, events=[e for e in events if e])


def event_text(events: list[str]) -> str:
    """CAR's "event" text: the event sentences concatenated in the given order."""
    return " ".join(f"{e}." for e in events)


def event_caption(caption: str, events: list[str] | None) -> str:
    """The text CAR's "event -> event" scenario trains and tests on: the stored events in order,
    or the caption as written when it has none stored."""
    return event_text(events) if events else caption


class UnshuffleableError(ValueError):
    """All events are the same text: no other order exists."""


def shuffle_events(events: list[str], rng: random.Random) -> list[str]:
    """A uniformly random order of `events` that differs from the original as a text sequence."""
    if len(events) < 2 or len(set(events)) < 2:
        raise UnshuffleableError(f"cannot shuffle {events!r}: fewer than two distinct events")
    while True:  # rejection sampling: at least half of the permutations differ, so this ends fast
        order = events[:]
        rng.shuffle(order)
        if order != events:
            return order


def shuffled_event_text(events: list[str], rng: random.Random) -> str | None:
    """CAR's chronological negative: the events concatenated in a random other order (None when
    no other order exists: fewer than two distinct events)."""
    try:
        return event_text(shuffle_events(events, rng))
    except UnshuffleableError:
        return None
