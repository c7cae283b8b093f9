"""The demo corpus: which clips exist, their split, their captions, and each clip as a shard sample.

Two sets:
- retrieval: short clips (<= 10 s) of 1-4 chained events, each with 3-5 paraphrased captions of
  the whole clip (start/end null) and the event list of each caption; rendered to video too;
- localization: untrimmed clips (10-60 s by default) of many events, sometimes with idle pauses
  between them; `moments` holds one caption per event and some captions of two consecutive
  events (compound, with ordering words), each with its start/end in seconds (HumanML3D
  Restore-like); `texts` holds the same captions with their events.
  Moment style "context" (the default), as in BABEL and HumanML3D-Restore: actions repeat inside
  a clip (the same action and parameters again: about one event in four), and a caption of a
  repeated action says which one it means, by its neighbour ("after turning left, a person
  jumps", "... before turning left") or its rank ("... for the second time"); a third of the
  one-off actions name a neighbour too. The span is the described action alone: "before" and
  "after" always mean that here (compound captions use the other ordering words). Style
  "isolated" is the corpus before that option, byte for byte: every action at most once (until
  the primitives run out), captions that name only their span.

Generator versions (`GENERATORS`, recorded in every sample's meta): 2 (the default) draws from
the 25 standing and seated primitives and the 6 whole-body moves (cartwheel, backflip, forward
roll, crawling, getting up from the floor, dancing; see demo.primitives), performed by bodies
whose shoulders and head sit where a person's do (demo.body.Body.girdle); 1 is the corpus before
that, byte for byte: the 25 primitives only, with the shoulders 0.24 m too low.

Everything about clip i derives from (seed, set, i): its body, events, timing noise and captions,
so any worker count gives the same samples. Splits come from a hash of the clip key alone.

Leakage rule (templated captions repeat, so it is stated precisely): every clip is in exactly one
split, and its parameters (body, events, noise seeds) are drawn for it alone; a caption string
(compared lower-cased with punctuation removed) belongs to one split only: train captions are
drawn first, then val and test draw theirs avoiding strings of the other splits. A held-out clip
(or localization moment) for which no unused caption can be found is dropped; the build prints
how many.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from demo.body import FPS, Body, random_body
from demo.captions import ORDINALS, Caption, describe, describe_in_context, normalize
from demo.compose import Event, perform
from demo.primitives import PRIMITIVES
from motion.importers.common import ImportedMotion
from motion.features import joints_to_features

DATASET = "trimo-demo"
SPLITS = ("train", "val", "test")
SPLIT_PERCENT = (84, 8, 8)
RETRIEVAL_MAX_FRAMES = 197  # <= 196 feature frames, the longest clip the field's loaders keep
RETRIEVAL_MIN_FRAMES = 41   # >= 40 feature frames (2 s), the shortest they keep
EVENT_COUNTS, EVENT_COUNT_P = (1, 2, 3, 4), (0.35, 0.3, 0.2, 0.15)
FILLER = "idle"  # pauses between localization events; not described by a moment
MOMENT_STYLES = ("context", "isolated")
REPEAT_P = 0.35   # context style: chance that an event repeats an earlier action of its clip
CONTEXT_P = 0.3   # ... that the caption of a one-off action names a neighbour anyway


@dataclass(frozen=True)
class Generator:
    """What a generator version draws: the primitive groups, and the bodies' girdle."""

    groups: tuple[str, ...]
    girdle: str


GENERATORS = {1: Generator(("core",), "rest"), 2: Generator(("core", "extended"), "anatomical")}
DEFAULT_GENERATOR = 2


@dataclass(frozen=True)
class CorpusSize:
    """Clip counts of the two sets and the length range (seconds) of localization clips."""

    retrieval: int
    localization: int
    localization_seconds: tuple[float, float] = (10.0, 60.0)


SIZES = {
    "tiny": CorpusSize(24, 4, (10.0, 14.0)),
    "small": CorpusSize(400, 40),
    "default": CorpusSize(3000, 300),
    "large": CorpusSize(20000, 2000),
}


def split_of(key: str) -> str:
    """train / val / test from a hash of the clip key (84 / 8 / 8 %)."""
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 100
    edge = 0
    for split, percent in zip(SPLITS, SPLIT_PERCENT):
        edge += percent
        if bucket < edge:
            return split
    raise AssertionError("split percentages must sum to 100")


@dataclass
class Moment:
    """Events first..last (inclusive) of a localization clip and the captions chosen for them."""

    first: int
    last: int
    captions: list[Caption] = field(default_factory=list)
    context: int | None = None     # an event outside the span that the captions name (a neighbour)
    occurrence: int | None = None  # or: which repeat of its action the span is (1-based)

    @property
    def kind(self) -> str:
        """compound | neighbour | ordinal | plain (one event named by itself alone)."""
        if self.last > self.first:
            return "compound"
        return "neighbour" if self.context is not None else "ordinal" if self.occurrence is not None else "plain"


@dataclass
class ClipPlan:
    """Everything needed to render one sample, decided before any joint is computed."""

    key: str
    kind: str  # "retrieval" or "localization"
    split: str
    seed: tuple[int, ...]
    body: np.ndarray  # bone lengths (22,)
    events: list[Event]
    num_frames: int
    captions: list[Caption] = field(default_factory=list)  # retrieval: whole-clip paraphrases
    moments: list[Moment] = field(default_factory=list)     # localization
    moment_style: str | None = None                          # localization: one of MOMENT_STYLES
    generator: int = DEFAULT_GENERATOR

    @property
    def performer(self) -> Body:
        return Body(np.asarray(self.body), GENERATORS[self.generator].girdle)


def _event(name: str, rng: np.random.Generator) -> Event:
    return Event(name, PRIMITIVES[name].sample(rng), seed=int(rng.integers(2 ** 31)))


def generator_spec(version: int) -> Generator:
    if version not in GENERATORS:
        raise ValueError(f"demo generator must be one of {sorted(GENERATORS)}, got {version!r}")
    return GENERATORS[version]


def _next_names(previous: str | None, exclude: set[str], generator: int) -> list[str]:
    """Primitives of the generator allowed after `previous` (posture), without immediate repeats or `exclude`."""
    groups = generator_spec(generator).groups
    names = [n for n, p in PRIMITIVES.items() if p.group in groups]
    if previous is not None and PRIMITIVES[previous].ends != "stand":
        return [n for n in names if PRIMITIVES[n].starts == PRIMITIVES[previous].ends]
    standing = [n for n in names if PRIMITIVES[n].starts == "stand" and n != previous and n not in exclude]
    if previous is None:  # a clip may begin seated (or lying)
        standing += [n for n in names if PRIMITIVES[n].starts != "stand"]
    return standing


def _event_length(event: Event, body: Body) -> int:
    """Frames of one event on its own; chained, each later event shares its first frame with the one before."""
    return len(PRIMITIVES[event.name].make(event.params, body, np.random.default_rng(event.seed)))


def _chained_frames(lengths: list[int]) -> int:
    return sum(lengths) - (len(lengths) - 1)


def plan_retrieval(index: int, seed: int, generator: int = DEFAULT_GENERATOR) -> ClipPlan:
    key = f"demo/retrieval/{index:06d}"
    clip_seed = (seed, 0, index)
    rng = np.random.default_rng(clip_seed)
    body = random_body(rng, generator_spec(generator).girdle)
    wanted = int(rng.choice(EVENT_COUNTS, p=EVENT_COUNT_P))
    events: list[Event] = []
    lengths: list[int] = []
    for _ in range(4 * wanted + 8):  # a few tries to fit the budget
        if len(events) >= wanted and _chained_frames(lengths) >= RETRIEVAL_MIN_FRAMES:
            break
        exclude = ({e.name for e in events} | {FILLER}) if events else set()
        event = _event(str(rng.choice(_next_names(events[-1].name if events else None, exclude, generator))), rng)
        length = _event_length(event, body)
        if _chained_frames(lengths + [length]) <= RETRIEVAL_MAX_FRAMES:
            events.append(event)
            lengths.append(length)
    if not events:  # cannot happen with the current primitives (each fits alone); fail loudly if it does
        raise RuntimeError(f"{key}: no event fits in {RETRIEVAL_MAX_FRAMES} frames")
    return ClipPlan(key, "retrieval", split_of(key), clip_seed, body.lengths, events, _chained_frames(lengths),
                    generator=generator)


def _same_action(a: Event, b: Event) -> bool:
    return a.name == b.name and a.params == b.params


def _repeatable(events: list[Event], previous: str | None, generator: int) -> list[Event]:
    """Earlier described events whose action may come next (posture, no immediate repeat)."""
    allowed = set(_next_names(previous, {FILLER}, generator))
    return [e for e in events if e.name in allowed]


def _place_in_context(moment: Moment, events: list[Event], described: list[int], rng: np.random.Generator) -> bool:
    """Decide how the captions of a one-event moment single it out among its action's repeats;
    False when nothing can (more repeats than ordinal words and no telling neighbour)."""
    i = moment.first
    repeats = [j for j in described if _same_action(events[j], events[i])]
    pos = described.index(i)

    def singles_out(step: int) -> bool:  # the neighbour `step` away (in described order) names only i
        k = pos + step
        if not 0 <= k < len(described):
            return False
        for j in repeats:
            other = described.index(j) + step
            if j != i and 0 <= other < len(described) and _same_action(events[described[other]], events[described[k]]):
                return False
        return True

    neighbours = [described[pos + step] for step in (-1, 1) if singles_out(step)]
    rank = repeats.index(i) + 1
    if len(repeats) > 1:
        pick = int(rng.integers(len(neighbours) + (rank <= len(ORDINALS))))
        if pick < len(neighbours):
            moment.context = neighbours[pick]
        elif rank <= len(ORDINALS):
            moment.occurrence = rank
        else:
            return False
    elif neighbours and rng.random() < CONTEXT_P:
        moment.context = neighbours[int(rng.integers(len(neighbours)))]
    return True


def _pair_repeats(moment: Moment, events: list[Event], described: list[int], generator: int) -> bool:
    """Whether the two actions of a compound moment happen in this order elsewhere in the clip too:
    one after the other, a pause between them or not ("then" allows one). Generator 1 looked for
    back-to-back repeats only, and kept the rare compound caption that fits two places."""
    return any((b == a + 1 or generator >= 2) and a != moment.first and _same_action(events[a], events[moment.first])
               and _same_action(events[b], events[moment.last]) for a, b in zip(described, described[1:]))


def plan_localization(index: int, seed: int, seconds: tuple[float, float] = (10.0, 60.0),
                      moment_style: str = "context", generator: int = DEFAULT_GENERATOR) -> ClipPlan:
    if moment_style not in MOMENT_STYLES:
        raise ValueError(f"moment_style must be one of {MOMENT_STYLES}, got {moment_style!r}")
    key = f"demo/localization/{index:06d}"
    clip_seed = (seed, 1, index)
    rng = np.random.default_rng(clip_seed)
    body = random_body(rng, generator_spec(generator).girdle)
    target = rng.uniform(*seconds) * FPS
    events: list[Event] = []
    lengths: list[int] = []
    used: set[str] = set()
    while True:
        previous = events[-1].name if events else None
        if previous not in (None, FILLER) and PRIMITIVES[previous].ends == "stand" and rng.random() < 0.25:
            event = _event(str(rng.choice([FILLER])), rng)
        elif moment_style == "context" and (again := _repeatable(events, previous, generator)) and rng.random() < REPEAT_P:
            earlier = again[int(rng.integers(len(again)))]
            event = Event(earlier.name, dict(earlier.params), seed=int(rng.integers(2 ** 31)))
        else:
            names = _next_names(previous, used | {FILLER}, generator) or _next_names(previous, {FILLER}, generator)
            event = _event(str(rng.choice(names)), rng)
        length = _event_length(event, body)
        frames = _chained_frames(lengths + [length])
        if frames > seconds[1] * FPS and events:
            break
        events.append(event)
        lengths.append(length)
        used.add(event.name)
        if frames >= target:
            break
    described = [i for i, e in enumerate(events) if e.name != FILLER]
    moments = [Moment(i, i) for i in described]
    compound = [Moment(a, b) for a, b in zip(described, described[1:])
                if b == a + 1 and rng.random() < 0.35]  # consecutive described events, told in one caption
    moments += compound
    if moment_style == "context":  # moments that cannot be singled out are dropped
        moments = [m for m in moments[:len(described)] if _place_in_context(m, events, described, rng)]
        moments += [m for m in compound if not _pair_repeats(m, events, described, generator)]
    moments.sort(key=lambda m: (m.first, m.last))
    return ClipPlan(key, "localization", split_of(key), clip_seed, body.lengths, events,
                    _chained_frames(lengths), moments=moments, moment_style=moment_style, generator=generator)


# ----------------------------------------------------------------------------- captions

def _describer(events: list[Event], moment: Moment | None = None, in_sequence: bool = False
               ) -> Callable[[np.random.Generator], Caption]:
    """rng -> one caption: of the whole clip (retrieval) or of a localization moment (`in_sequence`:
    a compound told without "before"/"after", which mean a neighbour in the context style)."""
    if moment is None or (moment.context is None and moment.occurrence is None):
        first, last = (0, len(events) - 1) if moment is None else (moment.first, moment.last)
        pairs = [(e.name, e.params) for e in events[first:last + 1]]
        return lambda rng: describe(pairs, rng, in_sequence=in_sequence)
    target = (events[moment.first].name, events[moment.first].params)
    context = None if moment.context is None else (events[moment.context].name, events[moment.context].params)
    side = {"occurrence": moment.occurrence}
    if context is not None:
        side = {"preceded_by": context} if moment.context < moment.first else {"followed_by": context}
    return lambda rng: describe_in_context(target, rng, **side)


def _draw_captions(describe_one: Callable[[np.random.Generator], Caption], rng: np.random.Generator, count: int,
                   taken: list[set[str]], tries: int) -> list[Caption]:
    """Up to `count` distinct captions from `describe_one` whose normalized text is in none of `taken`."""
    chosen: dict[str, Caption] = {}
    for _ in range(tries):
        caption = describe_one(rng)
        norm = normalize(caption.text)
        if norm not in chosen and not any(norm in t for t in taken):
            chosen[norm] = caption
            if len(chosen) == count:
                break
    return list(chosen.values())


def assign_captions(plans: list[ClipPlan], seed: int) -> tuple[list[ClipPlan], dict[str, int]]:
    """Caption every plan (train first), keeping caption strings within one split.

    Returns the plans that kept at least one caption (input order) and counts of what was dropped.
    """
    claimed: dict[str, set[str]] = {split: set() for split in SPLITS}  # normalized captions per split
    dropped = {"clips": 0, "moments": 0}
    order = sorted(range(len(plans)), key=lambda i: SPLITS.index(plans[i].split))
    keep = [True] * len(plans)
    for i in order:
        plan = plans[i]
        taken = [claimed[split] for split in SPLITS if split != plan.split]
        rng = np.random.default_rng((seed, 2, plan.seed[1], plan.seed[2]))
        tries = 12 if plan.split == "train" else 60
        if plan.kind == "retrieval":
            plan.captions = _draw_captions(_describer(plan.events), rng, int(rng.integers(3, 6)), taken, tries)
            texts = plan.captions
            keep[i] = bool(texts)
        else:
            for moment in plan.moments:
                describe_one = _describer(plan.events, moment, in_sequence=plan.moment_style == "context")
                moment.captions = _draw_captions(describe_one, rng, 2, taken, tries)
            dropped["moments"] += sum(not m.captions for m in plan.moments)
            plan.moments = [m for m in plan.moments if m.captions]
            texts = [c for m in plan.moments for c in m.captions]
            keep[i] = bool(plan.moments)
        claimed[plan.split].update(normalize(c.text) for c in texts)
        dropped["clips"] += not keep[i]
    return [p for p, k in zip(plans, keep) if k], dropped


# ----------------------------------------------------------------------------- samples

def _seconds(frame: int, num_features: int) -> float:
    return round(min(frame, num_features) / FPS, 4)


def render_sample(plan: ClipPlan, video: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shard sample of a plan: 263-d features, canonical joints, meta, and optionally video.

    `video` holds render_video's keyword arguments (fps, size), or None for no video.
    """
    body = plan.performer
    joints = perform(plan.events, body)
    canonical = ImportedMotion(joints, FPS, plan.key).to_canonical()
    motion = joints_to_features(canonical, source=plan.key)
    n = len(motion)
    actions = [{"name": e.name, "params": e.params, "start": _seconds(e.start, n), "end": _seconds(e.end, n)}
               for e in plan.events]
    meta: dict[str, Any] = {
        "dataset": DATASET, "split": plan.split, "fps": FPS, "duration": round(n / FPS, 4), "mirrored": False,
        "source": plan.key, "generator": {"version": plan.generator, "seed": list(plan.seed)},
        "body_height_scale": round(float(body.leg / 0.82), 4), "actions": actions,
    }
    if plan.moment_style == "context":  # (the isolated style writes the meta it always wrote)
        meta["generator"]["moments"] = plan.moment_style
    if plan.kind == "retrieval":
        meta["texts"] = [{"text": c.text, "events": c.events, "start": None, "end": None} for c in plan.captions]
    else:
        meta["texts"], meta["moments"] = [], []
        for m in plan.moments:
            start, end = actions[m.first]["start"], actions[m.last]["end"]
            moment = {"text": m.captions[0].text, "start": start, "end": end}
            if plan.moment_style == "context":   # evaluation reports each kind of query apart
                moment["kind"] = m.kind
            meta["moments"].append(moment)
            meta["texts"].extend({"text": c.text, "events": c.events, "start": start, "end": end} for c in m.captions)
    sample = {"key": plan.key, "motion": motion, "joints": canonical.astype(np.float32), "meta": meta}
    if video is not None:
        from demo.video import render_video

        sample["video"] = render_video(canonical, **video)
    return sample
