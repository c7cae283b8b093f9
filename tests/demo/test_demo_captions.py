"""Demo captions: templates per primitive, modifiers, ordering words that decompose recovers, and splits
without clip or caption leakage."""
import re
from collections import Counter

import numpy as np
import pytest

from demo.captions import ORDINALS, Phrase, describe, normalize, phrase_options
from demo.corpus import SPLIT_PERCENT, SPLITS, assign_captions, plan_localization, plan_retrieval, split_of
from demo.primitives import PRIMITIVES
from motion.events import decompose

SIDE_WORDS = {"left", "right"}


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_every_primitive_has_three_templates_naming_its_modifiers(name):
    rng = np.random.default_rng(0)
    for _ in range(10):
        params = PRIMITIVES[name].sample(rng)
        options = phrase_options(name, params, rng)
        finite = {o.finite("his") for o in options}
        assert len(finite) >= 3, f"{name} {params}: only {finite}"
        for text in finite:
            words = set(text.replace("-", " ").split())
            side = params.get("side")
            if side in SIDE_WORDS:
                assert side in words and not (SIDE_WORDS - {side}) & words, f"{text!r} for side {side}"
            if side == "both":
                assert "both" in words or "alternating" in words or "arms" in words, text
            if name == "walk":
                direction = params["direction"]
                expected = {"forward": {"forward", "forwards", "ahead"}, "backward": {"backward", "backwards"},
                            "left": {"left"}, "right": {"right"}}[direction]
                assert expected & words, f"{text!r} for direction {direction}"
            if name == "turn":
                named = {45: {"45", "slightly", "little"}, 90: {"90", "ninety", "quarter"}, 135: {"135"},
                         180: {"around", "180", "half", "backward"}}[params["angle"]]
                assert named & words, f"{text!r} for {params['angle']} degrees"


def test_phrase_conjugation():
    assert Phrase("walk", "forward").finite("his") == "walks forward"
    assert Phrase("crouch", "low").finite("his") == "crouches low"
    assert Phrase("do", "a jump").finite("her") == "does a jump"
    assert Phrase("sit", "down").gerund("his") == "sitting down"
    assert Phrase("wave", "{his} left hand").gerund("her") == "waving her left hand"
    assert Phrase("jab", "").gerund("his") == "jabbing"


def _random_events(rng, count):
    names = [n for n, p in PRIMITIVES.items() if p.starts == "stand" and p.ends == "stand"]
    return [(str(n), PRIMITIVES[str(n)].sample(rng)) for n in rng.choice(names, count, replace=False)]


def test_decompose_recovers_the_generated_events_of_compound_captions():
    rng = np.random.default_rng(0)
    agree, total, styles = 0, 0, Counter()
    for _ in range(800):
        caption = describe(_random_events(rng, int(rng.integers(2, 5))), rng)
        total += 1
        agree += decompose(caption.text).sentences == caption.events
        styles.update(w for w in ("then", "after that", "followed by", "before", "after", "finally", ".") if w in caption.text)
    assert agree / total >= 0.95, f"decompose agreed on {agree}/{total}"
    assert all(styles[w] > 20 for w in ("then", "after that", "followed by", "before", "finally")), styles


def test_same_phrases_in_another_order_are_another_caption():
    rng = np.random.default_rng(1)
    for _ in range(50):
        events = _random_events(rng, 2)
        forward = describe(events, np.random.default_rng(7))
        backward = describe(events[::-1], np.random.default_rng(7))
        assert forward.events != backward.events
        assert decompose(backward.text).sentences == backward.events


def test_reordering_connectives_keep_events_in_time_order():
    """'B after A-ing' names the later event first; its events (and decompose's) are still [A, B]."""
    from demo.captions import _after, _after_lead, _before

    rng = np.random.default_rng(2)
    a, b = Phrase("walk", "forward"), Phrase("sit", "down")
    fin, ger = [a.finite("his"), b.finite("his")], [a.gerund("his"), b.gerund("his")]
    texts = {style("a man", "he", fin, ger, rng) for style in (_after, _after_lead, _before)}
    assert texts == {"a man sits down after walking forward", "after walking forward, a man sits down",
                     "a man walks forward before sitting down"}
    for text in texts:
        assert decompose(text).events == ["walks forward", "sits down"]


def test_meta_texts_carry_the_event_list_of_each_caption():
    plans, _ = assign_captions([plan_retrieval(i, 0) for i in range(20)], 0)
    for plan in plans:
        assert 3 <= len(plan.captions) <= 5 or plan.split != "train"
        for caption in plan.captions:
            assert len(caption.events) == len(plan.events)
        assert len({normalize(c.text) for c in plan.captions}) == len(plan.captions)


def test_split_assignment_is_a_stable_hash_with_the_stated_proportions():
    keys = [f"demo/retrieval/{i:06d}" for i in range(20000)]
    counts = Counter(split_of(k) for k in keys)
    for split, percent in zip(SPLITS, SPLIT_PERCENT):
        assert abs(counts[split] / len(keys) - percent / 100) < 0.01
    assert [split_of(k) for k in keys[:50]] == [split_of(k) for k in keys[:50]]


def test_no_clip_or_caption_leakage_between_splits():
    plans = [plan_retrieval(i, 0) for i in range(400)]
    kept, dropped = assign_captions(plans, 0)
    by_split = {s: [p for p in kept if p.split == s] for s in SPLITS}
    assert all(by_split[s] for s in SPLITS)
    assert dropped["clips"] <= 0.2 * sum(len(by_split[s]) for s in ("val", "test")) + 2
    captions = {s: {normalize(c.text) for p in by_split[s] for c in p.captions} for s in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not captions[a] & captions[b], f"{a}/{b} share {sorted(captions[a] & captions[b])[:3]}"
    fingerprints = Counter((tuple(np.round(p.body, 9)), tuple((e.name, str(e.params), e.seed) for e in p.events)) for p in kept)
    assert max(fingerprints.values()) == 1  # no identical parameter set, so no clip appears twice
    assert len({p.key for p in kept}) == len(kept)
    for plan in kept:
        assert plan.split == split_of(plan.key)


@pytest.mark.parametrize("style", ["context", "isolated"])
def test_localization_moments_captions_and_leakage(style):
    plans = [plan_localization(i, 0, seconds=(10.0, 14.0), moment_style=style) for i in range(40)]
    kept, _ = assign_captions(plans, 0)
    captions = {s: set() for s in SPLITS}
    for plan in kept:
        assert plan.moments
        for moment in plan.moments:
            assert moment.captions
            named = moment.last - moment.first + 1 + (moment.context is not None)
            for caption in moment.captions:
                assert len(caption.events) == named
                assert decompose(caption.text).sentences == caption.events
                captions[plan.split].add(normalize(caption.text))
    assert not captions["train"] & (captions["val"] | captions["test"])
    assert any(m.last > m.first for p in kept for m in p.moments)  # compound moments exist


def _action(event):
    return event.name, str(event.params)


@pytest.mark.parametrize("generator", [1, 2])
def test_context_moments_repeat_actions_and_say_which_one_they_mean(generator):
    """Brute force over each clip: a moment's caption names exactly one event of the clip."""
    plans, _ = assign_captions([plan_localization(i, 3, seconds=(20.0, 40.0), generator=generator)
                                for i in range(60)], 3)
    kinds = Counter()
    for plan in plans:
        described = [i for i, e in enumerate(plan.events) if e.name != "idle"]
        actions = [_action(plan.events[i]) for i in described]
        for moment in plan.moments:
            if moment.last > moment.first:   # a compound: its ordered pair of actions happens once
                pair = (_action(plan.events[moment.first]), _action(plan.events[moment.last]))
                assert list(zip(actions, actions[1:])).count(pair) == 1
                # "before"/"after" (not "after that") are kept for one-event spans named by a neighbour
                assert not any(re.search(r"\bbefore\b|\bafter\b(?! that)", normalize(c.text)) for c in moment.captions)
                kinds["compound"] += 1
                continue
            target = _action(plan.events[moment.first])
            rank = [i for i in described if _action(plan.events[i]) == target].index(moment.first) + 1
            if moment.occurrence is not None:
                assert moment.occurrence == rank
                assert all(ORDINALS[rank - 1] in c.text.split() for c in moment.captions)
                kinds["ordinal"] += 1
            elif moment.context is not None:
                step = described.index(moment.context) - described.index(moment.first)
                assert step in (-1, 1)   # the nearest described neighbour (pauses between are allowed)
                context = actions[described.index(moment.context)]
                matches = [k for k in range(len(described)) if actions[k] == target
                           and 0 <= k + step < len(described) and actions[k + step] == context]
                assert matches == [described.index(moment.first)]
                for caption in moment.captions:   # the context's sentence sits on its side in time order
                    assert ("after" if step < 0 else "before") in normalize(caption.text).split()
                kinds["neighbour"] += 1
            else:
                assert actions.count(target) == 1, "a repeated action needs a caption that says which"
                kinds["plain"] += 1
    repeated = sum(len(p.events) - len({_action(e) for e in p.events if e.name != "idle"})
                   - sum(e.name == "idle" for e in p.events) for p in plans)
    assert repeated > 0.15 * sum(len(p.events) for p in plans)
    assert min(kinds.values()) > 20 and set(kinds) == {"compound", "ordinal", "neighbour", "plain"}, kinds


def test_isolated_moments_name_only_their_span():
    plans, _ = assign_captions([plan_localization(i, 3, seconds=(20.0, 40.0), moment_style="isolated")
                                for i in range(20)], 3)
    assert all(m.context is None and m.occurrence is None for p in plans for m in p.moments)
    with pytest.raises(ValueError, match="moment_style"):
        plan_localization(0, 0, moment_style="babel")


def test_normalize():
    assert normalize("A person walks, then  Turns left.") == "a person walks then turns left"
