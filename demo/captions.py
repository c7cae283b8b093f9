"""HumanML3D-style captions for demo events: templates, modifiers and ordering connectives.

An event is described by a verb phrase (`Phrase`: base verb + the rest), e.g. ("walk", "forward
slowly") -> "walks forward slowly" / "walking forward slowly". Every primitive has at least three
templates; modifiers name the direction, pace, side, count and angle the motion really has.
Compound captions join the phrases with ordering words ("then", "and then", "after that",
"followed by", "before", "after", "first ... finally ...", sentence breaks), in the order the
events happen, so that the same phrases in another order describe another motion. The caption's
`events` are the event sentences (subject + finite phrase) in temporal order, as
motion.events.decompose(text).sentences returns them (a test checks that it recovers them).

Phrases avoid the words decompose splits on ("and", commas, "then", "while", "before"...), so
one phrase is always one event.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# (subject, possessive, pronoun for a later sentence)
SUBJECTS = (
    ("a person", "his", "the person"), ("a person", "their", "the person"), ("a man", "his", "he"),
    ("a woman", "her", "she"), ("someone", "their", "the person"), ("the person", "his", "he"),
    ("a man", "his", "the man"), ("a woman", "her", "the woman"), ("a human", "its", "the human"),
    ("the man", "his", "he"), ("the woman", "her", "she"), ("a figure", "its", "the figure"),
)
_ES = ("s", "sh", "ch", "x", "z")
_GERUND = {"sit": "sitting", "run": "running", "jog": "jogging", "hop": "hopping", "step": "stepping",
           "clap": "clapping", "spin": "spinning", "get": "getting", "put": "putting",
           "jab": "jabbing"}
COUNT_WORDS = {1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times"}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
                9: "nine", 10: "ten", 11: "eleven", 12: "twelve"}


@dataclass(frozen=True)
class Phrase:
    """A verb phrase: `verb` in its base form and the words after it ({his} = the possessive)."""

    verb: str
    rest: str = ""

    def finite(self, his: str) -> str:
        v = self.verb
        if v == "do":
            third = "does"
        elif v.endswith(_ES):
            third = v + "es"
        elif v.endswith("y") and v[-2] not in "aeiou":
            third = v[:-1] + "ies"
        else:
            third = v + "s"
        return _join(third, self.rest.format(his=his))

    def gerund(self, his: str) -> str:
        v = self.verb
        ing = _GERUND.get(v) or (v[:-1] + "ing" if v.endswith("e") and not v.endswith("ee") else v + "ing")
        return _join(ing, self.rest.format(his=his))


def _join(*words: str) -> str:
    return " ".join(" ".join(w for w in words if w).split())


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


_DIR = {"forward": ("forward", "forwards", "straight ahead", "ahead"), "backward": ("backward", "backwards"),
        "left": ("to the left", "sideways to the left", "to {his} left"),
        "right": ("to the right", "sideways to the right", "to {his} right")}
_PACE = {"slow": ("slowly", "at a slow pace", "carefully"), "normal": ("", "at a normal pace", "steadily"),
         "fast": ("quickly", "fast", "briskly", "at a fast pace")}
_ANGLE = {45: ("45 degrees", "slightly", "a little"), 90: ("90 degrees", "ninety degrees"),
          135: ("135 degrees",), 180: ("around", "180 degrees", "all the way around")}


def phrase_options(name: str, p: dict[str, Any], rng: np.random.Generator) -> list[Phrase]:
    """Every template of primitive `name`, filled with modifiers for parameters `p` (>= 3)."""
    d = _pick(rng, _DIR[p["direction"]]) if "direction" in p else ""
    side = p.get("side", "")
    n = p.get("count", 1)
    times = COUNT_WORDS.get(n, f"{n} times")
    if name == "walk":
        pace = _pick(rng, _PACE[p["pace"]])
        options = [Phrase("walk", f"{d} {pace}"), Phrase("walk", f"{pace} {d}" if pace not in ("", "fast") else d),
                   Phrase("take", f"{NUMBER_WORDS[p['steps']]} steps {d} {pace}"), Phrase("move", f"{d} {pace} on foot")]
        if p["direction"] in ("left", "right"):
            options.append(Phrase("step", f"sideways to {{his}} {p['direction']}"))
        if p["direction"] == "forward" and p["pace"] == "slow":
            options.append(Phrase("stroll", d))
        if p["direction"] == "forward" and p["pace"] == "fast":
            options.append(Phrase("stride", f"{d} quickly"))
        return options
    if name == "jog":
        return [Phrase("jog", d), Phrase("jog", f"{d} at a steady pace"), Phrase("do", f"a light jog {d}"),
                Phrase("jog", f"{NUMBER_WORDS[p['steps']]} steps {d}")]
    if name == "run":
        if p["pace"] == "fast":
            return [Phrase("sprint", "forward"), Phrase("run", "forward at full speed"), Phrase("sprint", "straight ahead"),
                    Phrase("run", "forward very fast")]
        return [Phrase("run", "forward"), Phrase("run", "straight ahead"), Phrase("run", "forwards"),
                Phrase("run", "a short distance forward")]
    if name == "crouch_walk":
        return [Phrase("sneak", f"{d} in a crouch"), Phrase("walk", f"{d} in a crouched position"),
                Phrase("crouch", f"low to walk {d}"), Phrase("walk", f"{d} bent over low")]
    if name == "turn":
        a = _pick(rng, _ANGLE[p["angle"]])
        options = [Phrase("turn", f"{side} {a}" if a != "around" else f"around to the {side}"),
                   Phrase("turn", f"{a} to the {side}" if a != "around" else f"around to {{his}} {side}"),
                   Phrase("rotate", f"{a} to {{his}} {side}" if a != "around" else f"to the {side} to face backward"),
                   Phrase("pivot", f"{a} to the {side}")]
        if p["angle"] == 90:
            options.append(Phrase("make", f"a quarter turn to the {side}"))
        if p["angle"] == 180:
            options.append(Phrase("make", f"a half turn to the {side}"))
        return options
    if name == "spin":
        k = p["turns"]
        return [Phrase("spin", f"around {COUNT_WORDS[k]} to the {side}"),
                Phrase("spin", f"in {'a full circle' if k == 1 else 'two full circles'} to {{his}} {side}"),
                Phrase("do", f"{'a full spin' if k == 1 else 'two full spins'} to the {side}"),
                Phrase("twirl", f"{COUNT_WORDS[k]} to the {side}")]
    if name == "march":
        return [Phrase("march", "in place"), Phrase("march", "on the spot"), Phrase("lift", "{his} knees high in place"),
                Phrase("march", f"in place for {NUMBER_WORDS[p['steps']]} steps")]
    if name == "jump":
        if n == 1:
            return [Phrase("jump", "up"), Phrase("jump", "in place"), Phrase("do", "a jump"), Phrase("jump", "straight up")]
        return [Phrase("jump", times), Phrase("jump", f"up {times}"), Phrase("do", f"{NUMBER_WORDS[n]} jumps in place"),
                Phrase("jump", f"in place {times}")]
    if name == "jump_forward":
        extra = "" if n == 1 else f" {times}"
        return [Phrase("jump", f"forward{extra}"), Phrase("leap", f"forward{extra}"),
                Phrase("do", "a forward jump" if n == 1 else f"{NUMBER_WORDS[n]} forward jumps"), Phrase("jump", f"ahead{extra}")]
    if name == "hop":
        return [Phrase("hop", f"on {{his}} {side} foot"), Phrase("hop", f"on {{his}} {side} leg {times}"),
                Phrase("jump", f"on {{his}} {side} leg"), Phrase("hop", f"{times} on the {side} foot")]
    if name == "jumping_jacks":
        return [Phrase("do", f"{NUMBER_WORDS[n]} jumping jacks"), Phrase("perform", "jumping jacks"),
                Phrase("do", "jumping jacks"), Phrase("perform", f"{NUMBER_WORDS[n]} jumping jacks")]
    if name == "squat":
        if n == 1:
            return [Phrase("squat", "down"), Phrase("do", "a squat"), Phrase("squat", "down low"), Phrase("do", "one deep squat")]
        return [Phrase("squat", times), Phrase("do", f"{NUMBER_WORDS[n]} squats"), Phrase("squat", f"down {times}"),
                Phrase("do", f"{NUMBER_WORDS[n]} deep squats")]
    if name == "lunge":
        return [Phrase("lunge", f"forward with {{his}} {side} leg"), Phrase("do", f"a lunge with the {side} leg"),
                Phrase("step", f"forward into a lunge with {{his}} {side} foot"), Phrase("lunge", f"forward on the {side} leg")]
    if name == "sit_down":
        return [Phrase("sit", "down"), Phrase("sit", "down on a chair"), Phrase("take", "a seat"), Phrase("sit", "down on something")]
    if name == "stand_up":
        return [Phrase("stand", "up"), Phrase("get", "up from the chair"), Phrase("rise", "from {his} seat"),
                Phrase("stand", "back up")]
    if name == "kick":
        h = p["height"]
        extra = "" if n == 1 else f" {times}"
        return [Phrase("kick", f"with {{his}} {side} leg{extra}"), Phrase("kick", f"{{his}} {side} foot forward{extra}"),
                Phrase("do", f"a {h} kick with the {side} leg" if n == 1 else f"{NUMBER_WORDS[n]} {h} kicks with the {side} leg"),
                Phrase("kick", f"{h} with {{his}} {side} foot{extra}")]
    if name == "punch":
        extra = "" if n == 1 else f" {times}"
        if side == "both":
            return [Phrase("punch", f"with both fists{extra}"), Phrase("throw", f"{'punches' if n > 1 else 'a punch'} with alternating fists"),
                    Phrase("punch", f"forward with both hands{extra}"), Phrase("jab", f"with both fists{extra}")]
        return [Phrase("punch", f"with {{his}} {side} hand{extra}"), Phrase("punch", f"forward with {{his}} {side} fist{extra}"),
                Phrase("throw", f"{'a punch' if n == 1 else NUMBER_WORDS[n] + ' punches'} with {{his}} {side} arm"),
                Phrase("jab", f"with the {side} hand{extra}")]
    if name == "wave":
        which = "both hands" if side == "both" else f"{{his}} {side} hand"
        return [Phrase("wave", which), Phrase("wave", f"with {which}"), Phrase("wave", f"hello with {which}"),
                Phrase("wave", f"{which} in the air")]
    if name == "raise_arms":
        arm = "both arms" if side == "both" else f"{{his}} {side} arm"
        if p["height"] == "overhead":
            return [Phrase("raise", f"{arm} above {{his}} head"), Phrase("lift", f"{arm} up high"),
                    Phrase("raise", f"{arm} overhead"), Phrase("put", f"{arm} up in the air")]
        return [Phrase("raise", f"{arm} to shoulder height"), Phrase("hold", f"{arm} out to the side"),
                Phrase("extend", f"{arm} out sideways"), Phrase("lift", f"{arm} out to shoulder level")]
    if name == "clap":
        return [Phrase("clap", f"{{his}} hands {times}"), Phrase("clap", times), Phrase("clap", f"{times} in front of {{his}} chest"),
                Phrase("clap", f"{{his}} hands together {times}")]
    if name == "arm_circles":
        arm = "both arms" if side == "both" else f"{{his}} {side} arm"
        return [Phrase("circle", arm), Phrase("make", f"circles with {arm}"), Phrase("rotate", f"{arm} in circles"),
                Phrase("swing", f"{arm} in circles")]
    if name == "pick_up":
        return [Phrase("pick", f"something up with {{his}} {side} hand"), Phrase("bend", f"down to pick up an object with {{his}} {side} hand"),
                Phrase("reach", f"down with {{his}} {side} hand to grab something"),
                Phrase("pick", f"up an object from the floor with the {side} hand")]
    if name == "bow":
        return [Phrase("bow"), Phrase("bow", "forward"), Phrase("take", "a bow"), Phrase("bend", "forward at the waist into a bow")]
    if name == "throw":
        return [Phrase("throw", f"something with {{his}} {side} hand"), Phrase("throw", f"a ball with {{his}} {side} arm"),
                Phrase("make", f"a throwing motion with {{his}} {side} arm"), Phrase("toss", f"an object overhand with the {side} hand")]
    if name == "cartwheel":
        if n == 1:
            return [Phrase("do", f"a cartwheel to the {side}"), Phrase("turn", f"a cartwheel to {{his}} {side}"),
                    Phrase("perform", f"a cartwheel towards the {side}"), Phrase("do", f"a cartwheel sideways to the {side}")]
        return [Phrase("do", f"{NUMBER_WORDS[n]} cartwheels to the {side}"), Phrase("turn", f"{NUMBER_WORDS[n]} cartwheels to {{his}} {side}"),
                Phrase("perform", f"{NUMBER_WORDS[n]} cartwheels towards the {side}"), Phrase("do", f"cartwheels to the {side} {times}")]
    if name == "backflip":
        return [Phrase("do", "a backflip"), Phrase("perform", "a back flip"), Phrase("jump", "up into a backflip"),
                Phrase("do", "a flip backwards in the air")]
    if name == "roll":
        if n == 1:
            return [Phrase("do", "a forward roll"), Phrase("roll", "forward on the ground"), Phrase("perform", "a somersault forward"),
                    Phrase("roll", "over forwards")]
        return [Phrase("do", f"{NUMBER_WORDS[n]} forward rolls"), Phrase("roll", f"forward on the ground {times}"),
                Phrase("perform", f"{NUMBER_WORDS[n]} somersaults forward"), Phrase("roll", f"over forwards {times}")]
    if name == "crawl":
        return [Phrase("crawl", "forward on all fours"), Phrase("crawl", "forward"), Phrase("get", "down to crawl forward"),
                Phrase("crawl", f"{NUMBER_WORDS[p['steps']]} steps forward on the floor")]
    if name == "get_up":
        if p["face"] == "down":
            return [Phrase("get", "up from lying face down"), Phrase("push", "up off the floor to stand up"),
                    Phrase("rise", "from lying on {his} stomach"), Phrase("stand", "up from lying on {his} front")]
        return [Phrase("get", "up from lying on {his} back"), Phrase("sit", "up from the floor to stand up"),
                Phrase("rise", "from lying on the ground"), Phrase("stand", "up from lying on {his} back")]
    if name == "dance":
        if p["arms"] == "up":
            return [Phrase("dance", "with {his} arms up"), Phrase("dance", "in place with raised arms"),
                    Phrase("dance", "waving {his} arms over {his} head"), Phrase("do", "a little dance with {his} hands up")]
        return [Phrase("dance", "swinging {his} arms"), Phrase("dance", "in place"), Phrase("dance", "to the music"),
                Phrase("do", "a little dance")]
    if name == "idle":
        return [Phrase("stand", "still"), Phrase("wait", "in place"), Phrase("stay", "still for a moment"), Phrase("stand", "idle")]
    raise KeyError(f"no caption templates for primitive {name!r}")


@dataclass
class Caption:
    """One caption and its events: sentences (subject + finite phrase), in the order they happen."""

    text: str
    events: list[str]


def describe(events: list[tuple[str, dict[str, Any]]], rng: np.random.Generator, in_sequence: bool = False) -> Caption:
    """One caption of the events (name, params) in their order, with a random style; `in_sequence`:
    never "before"/"after", which describe_in_context keeps for a span of one event named by its
    neighbour (so that "X after Y-ing" always means X alone in a corpus that has both)."""
    subject, his, pronoun = _pick(rng, SUBJECTS)
    phrases = [_pick(rng, phrase_options(name, params, rng)) for name, params in events]
    fin = [ph.finite(his) for ph in phrases]
    ger = [ph.gerund(his) for ph in phrases]
    n = len(phrases)
    if n == 1:
        text = f"{subject} {fin[0]}"
    else:
        style = _pick(rng, _SEQUENCE_STYLES if in_sequence else _STYLES_2 if n == 2 else _STYLES_N)
        text = style(subject, pronoun, fin, ger, rng)
    return _finish(text, subject, fin, rng)


ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


def describe_in_context(event: tuple[str, dict[str, Any]], rng: np.random.Generator, *,
                        preceded_by: tuple[str, dict[str, Any]] | None = None,
                        followed_by: tuple[str, dict[str, Any]] | None = None,
                        occurrence: int | None = None) -> Caption:
    """One caption of `event` that also says which of its repeats in a long motion is meant: by the
    action just before it ("after turning left, a person jumps"), just after it ("a person jumps
    before turning left") or by its `occurrence`, 1-based ("a person jumps for the second time").
    Exactly one of the three. The caption's events are the sentences it names, context included,
    in time order; the described span is `event` alone."""
    if sum(x is not None for x in (preceded_by, followed_by, occurrence)) != 1:
        raise ValueError("describe_in_context needs exactly one of preceded_by, followed_by, occurrence")
    subject, his, pronoun = _pick(rng, SUBJECTS)
    pairs = [p for p in (preceded_by, event, followed_by) if p is not None]
    phrases = [_pick(rng, phrase_options(name, params, rng)) for name, params in pairs]
    fin = [ph.finite(his) for ph in phrases]
    ger = [ph.gerund(his) for ph in phrases]
    if occurrence is not None:
        fin[0] += " " + _pick(rng, ("for the {} time", "the {} time")).format(ORDINALS[occurrence - 1])
        text = f"{subject} {fin[0]}"
    elif preceded_by is not None:
        text = _pick(rng, (_after, _after_lead))(subject, pronoun, fin, ger, rng)
    else:
        text = _before(subject, pronoun, fin, ger, rng)
    return _finish(text, subject, fin, rng)


def _finish(text: str, subject: str, fin: list[str], rng: np.random.Generator) -> Caption:
    """Random final period and capital; the events as sentences with the subject as written."""
    if rng.random() < 0.7:
        text += "."
    if rng.random() < 0.3:
        text = text[0].upper() + text[1:]
    if text.startswith(subject[0].upper() + subject[1:] + " "):   # the subject as written: capitalized at the start
        subject = subject[0].upper() + subject[1:]
    return Caption(text, [f"{subject} {f}" for f in fin])


# Compound styles: (subject, pronoun for later sentences, finite phrases, gerunds, rng) -> text.

def _then(s, p, fin, ger, rng):
    word = _pick(rng, (", then ", " and then ", ", and then ", ", after that ", " then "))
    return f"{s} {fin[0]}" + "".join(word + f for f in fin[1:])


def _sentences(s, p, fin, ger, rng):
    out = f"{s} {fin[0]}."
    for f in fin[1:]:
        lead = _pick(rng, ("after that, ", "then ", "next, ", "afterwards, ", ""))
        out += f" {lead}{p} {f}." if lead != "then " else f" {p} then {f}."
    return out[:-1]


def _first_finally(s, p, fin, ger, rng):
    opening = _pick(rng, (f"first, {s} {fin[0]}", f"{s} first {fin[0]}", f"{s} {fin[0]}"))
    middle = "".join(f", then {f}" for f in fin[1:-1])
    return f"{opening}{middle}, {_pick(rng, ('and finally', 'finally', 'and lastly'))} {fin[-1]}"


def _followed(s, p, fin, ger, rng):
    return f"{s} {', then '.join(fin[:-1])}, followed by {ger[-1]}"


def _before(s, p, fin, ger, rng):
    return f"{s} {', then '.join(fin[:-1])} before {ger[-1]}"


def _after(s, p, fin, ger, rng):
    return f"{s} {fin[1]} after {ger[0]}"


def _after_lead(s, p, fin, ger, rng):
    return f"after {ger[0]}, {s} {fin[1]}"


def _list(s, p, fin, ger, rng):
    return f"{s} {', '.join(fin[:-1])}{',' if len(fin) > 2 else ''} and {fin[-1]}"


_STYLES_N = (_then, _then, _sentences, _first_finally, _followed, _before, _list)
_SEQUENCE_STYLES = tuple(s for s in _STYLES_N if s is not _before)
_STYLES_2 = _STYLES_N + (_after, _after_lead)


def normalize(text: str) -> str:
    """The form captions are compared in for leakage: lower case, letters/digits/spaces only."""
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())
