"""Event decomposition and the chronological shuffle (CAR)."""
import random
from itertools import permutations

import pytest

from motion.events import UnshuffleableError, decompose, event_caption, event_text, shuffle_events, shuffled_event_text

# Hand-written captions in HumanML3D style with the events a careful annotator would list.
CASES = [
    ("a person walks forward, then turns around and sits down.", ["walks forward", "turns around", "sits down"]),
    ("a man jumps up and down twice.", ["jumps up and down twice"]),
    ("the person waves with their right hand.", ["waves with their right hand"]),
    ("a person walks forward and then stops.", ["walks forward", "stops"]),
    ("a person squats down, then stands back up.", ["squats down", "stands back up"]),
    ("someone runs to the left, then jumps over something.", ["runs to the left", "jumps over something"]),
    ("first the person kicks with the left leg, then punches with the right hand.", ["kicks with the left leg", "punches with the right hand"]),
    ("a person sits down after walking forward.", ["walks forward", "sits down"]),
    ("a person waves before sitting down.", ["waves", "sits down"]),
    ("before sitting down, the man claps his hands.", ["claps his hands", "sits down"]),
    ("after turning around, a person walks back.", ["turns around", "walks back"]),
    ("a person walks forward while waving their left hand.", ["walks forward while waving their left hand"]),
    ("a figure waves as it walks in a circle.", ["waves as it walks in a circle"]),
    ("a person walks forward, turns left, and walks back.", ["walks forward", "turns left", "walks back"]),
    ("the man raises both arms above his head and then lowers them.", ["raises both arms above his head", "lowers them"]),
    ("a person jogs in place followed by a jump.", ["jogs in place", "does a jump"]),
    ("a person walks slowly forward, followed by turning to the right.", ["walks slowly forward", "turns to the right"]),
    ("a man steps forward. he then kicks with his right foot.", ["steps forward", "kicks with his right foot"]),
    ("a person picks something up from the floor and places it on a table.", ["picks something up from the floor", "places it on a table"]),
    ("the person bends down to pick something up, then stands up.", ["bends down to pick something up", "stands up"]),
    ("a person spins clockwise once.", ["spins clockwise once"]),
    ("a person crouches and walks forward slowly.", ["crouches", "walks forward slowly"]),
    ("a person stands still, then starts to run.", ["stands still", "starts to run"]),
    ("a person walks in a circle counterclockwise.", ["walks in a circle counterclockwise"]),
    ("first a person jumps forward, then turns around, and finally sits on the ground.", ["jumps forward", "turns around", "sits on the ground"]),
    ("a man walks to the right and after that waves.", ["walks to the right", "waves"]),
    ("a person runs forward, stops, and turns back.", ["runs forward", "stops", "turns back"]),
    ("a person is kneeling on the ground.", ["is kneeling on the ground"]),
    ("a person lifts their left leg and holds it.", ["lifts their left leg", "holds it"]),
    ("someone throws a ball with the right arm.", ["throws a ball with the right arm"]),
    ("the person does jumping jacks.", ["does jumping jacks"]),
    ("a person hops on the left foot three times, then on the right foot.", ["hops on the left foot three times", "on the right foot"]),
    ("a person stretches their arms out to the sides and rotates them.", ["stretches their arms out to the sides", "rotates them"]),
    ("a person walks backwards, then forwards.", ["walks backwards", "forwards"]),
    ("a person sits down on a chair and then stands up again.", ["sits down on a chair", "stands up again"]),
    ("a man dances with his arms up.", ["dances with his arms up"]),
    ("the person claps their hands twice, then waves.", ["claps their hands twice", "waves"]),
    ("a person walks up the stairs.", ["walks up the stairs"]),
    ("a person crawls on all fours, then gets up.", ["crawls on all fours", "gets up"]),
    ("a person punches forward with both fists.", ["punches forward with both fists"]),
    ("a person turns right and walks forward, then turns left.", ["turns right", "walks forward", "turns left"]),
    ("a person shakes their right hand after waving.", ["waves", "shakes their right hand"]),
    ("a woman lies down on the floor and rolls over.", ["lies down on the floor", "rolls over"]),
    ("a person slowly walks forward, then quickly runs back.", ["slowly walks forward", "quickly runs back"]),
    ("a person jumps forward, lands, and jumps again.", ["jumps forward", "lands", "jumps again"]),
    ("a person steps to the left and steps to the right.", ["steps to the left", "steps to the right"]),
    ("the person kicks with the right foot, then with the left foot.", ["kicks with the right foot", "with the left foot"]),
    ("a person walks forward holding something in their left hand.", ["walks forward holding something in their left hand"]),
    ("a person waves hello with the left hand while standing.", ["waves hello with the left hand while standing"]),
    ("a person raises their right arm, then their left arm, and then both arms.", ["raises their right arm", "their left arm", "both arms"]),
    ("a person bends over and touches their toes.", ["bends over", "touches their toes"]),
    ("the man jogs forward, slows down, and stops.", ["jogs forward", "slows down", "stops"]),
    ("a person walks forward, then turns around. after that the person sits down.", ["walks forward", "turns around", "sits down"]),
    ("a person swings their arms back and forth.", ["swings their arms back and forth"]),
]


def test_at_least_fifty_cases():
    assert len(CASES) >= 50


def test_decomposition_accuracy_on_handwritten_captions():
    wrong = [(c, decompose(c).events, e) for c, e in CASES if decompose(c).events != e]
    accuracy = 1 - len(wrong) / len(CASES)
    assert accuracy >= 0.90, f"{accuracy:.1%} exact; wrong: " + "\n".join(map(str, wrong))


def test_subject_is_kept_once():
    dec = decompose("a man walks forward, then turns around.")
    assert dec.subject == "a man" and dec.events == ["walks forward", "turns around"]
    assert dec.sentences == ["a man walks forward", "a man turns around"]          # what a shard stores
    assert event_text(dec.sentences) == "a man walks forward. a man turns around."
    assert decompose("walks forward, then sits").sentences == ["a person walks forward", "a person sits"]


def test_shuffle_never_returns_the_original_order():
    rng = random.Random(0)
    for events in (["a", "b"], ["a", "b", "c"], ["a", "a", "b"], ["w", "x", "y", "z"]):
        seen = set()
        for _ in range(300):
            out = shuffle_events(events, rng)
            assert out != events and sorted(out) == sorted(events)
            seen.add(tuple(out))
        # Every other distinct order shows up (uniform over the different orders).
        assert seen == {p for p in permutations(events) if list(p) != events}


def test_unshuffleable_captions_are_reported():
    with pytest.raises(UnshuffleableError):
        shuffle_events(["jumps", "jumps"], random.Random(0))
    with pytest.raises(UnshuffleableError):
        shuffle_events(["jumps"], random.Random(0))
    assert shuffled_event_text(decompose("a person jumps.").sentences, random.Random(0)) is None


def test_car_texts_variants():
    caption = "a person walks forward, then sits down."
    events = decompose(caption).sentences
    assert event_caption(caption, None) == caption                     # nothing stored: as written
    assert event_caption(caption, events) == "a person walks forward. a person sits down."
    assert shuffled_event_text(events, random.Random(1)) == "a person sits down. a person walks forward."


def test_cli_rule_based_and_external_command(tmp_path):
    import json
    import sys

    from tools.decompose_events import main

    caps = tmp_path / "caps.txt"
    caps.write_text("a person walks forward, then sits down.#a/DET#0.0#0.0\na person jumps.\n")
    out = tmp_path / "ev.jsonl"
    assert main([str(caps), "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["events"] == ["a person walks forward", "a person sits down"]   # as shards store them
    assert rows[0]["shuffled_event_text"] == "a person sits down. a person walks forward."
    assert rows[1]["shuffled_event_text"] is None

    # A stand-in external decomposer: the last two words of each caption as its event phrases;
    # the caption's subject goes in front of each.
    script = tmp_path / "fake_llm.py"
    script.write_text("import sys, json\nfor line in sys.stdin:\n    print(json.dumps(line.split()[-2:]))\n")
    assert main([str(caps), "-o", str(out), "--command", f"{sys.executable} {script}"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["events"] == ["a person sits", "a person down."]
    assert rows[1]["events"] == ["a person person", "a person jumps."]

    bad = tmp_path / "bad.py"
    bad.write_text("print('not json')\nprint('x')\n")
    with pytest.raises(SystemExit, match="not JSON"):
        main([str(caps), "-o", str(out), "--command", f"{sys.executable} {bad}"])
