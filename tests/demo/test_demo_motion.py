"""Demo corpus motions: physical plausibility of every primitive, compound and untrimmed clips,
and that each primitive's parameters mean what its captions say."""
import zlib

import numpy as np
import pytest

from demo.body import FOOT_PITCH, Body, assemble, random_body
from demo.compose import Event, PostureError, chain_events, perform
from demo.corpus import RETRIEVAL_MAX_FRAMES, RETRIEVAL_MIN_FRAMES, plan_localization, plan_retrieval
from demo.primitives import PRIMITIVES
from motion.importers.common import ImportedMotion
from motion.features import features_to_joints, joints_to_features
from motion.skeleton import DEFAULT_BONE_LENGTHS, bone_lengths, facing_angles

FPS = 20.0
TOES, ANKLES = [10, 11], [7, 8]
MAX_JOINT_SPEED = 15.0  # m/s; fast kicks and punches in mocap peak around 10-14 m/s
MAX_ROOT_SPEED = 6.0


def check_physics(joints: np.ndarray, contact: np.ndarray, where: str) -> None:
    """Constant bones, no NaN, nothing under the floor, planted feet on the floor and still, bounded speeds."""
    assert np.isfinite(joints).all(), f"{where}: NaN"
    lengths = bone_lengths(joints)
    np.testing.assert_allclose(lengths, np.broadcast_to(lengths[:1], lengths.shape), atol=1e-6, err_msg=where)
    assert joints[..., 1].min() > -0.02, f"{where}: a joint is {-joints[..., 1].min():.3f} m under the floor"
    toes = joints[:, TOES, 1]
    assert contact.any(), f"{where}: never touches the floor"
    assert np.abs(toes[contact]).max() < 0.02, f"{where}: planted ball of the foot {np.abs(toes[contact]).max():.3f} m off the floor"
    speed = np.linalg.norm(np.diff(joints, axis=0), axis=-1) * FPS
    assert speed.max() < MAX_JOINT_SPEED, f"{where}: joint speed {speed.max():.1f} m/s"
    assert speed[:, 0].max() < MAX_ROOT_SPEED, f"{where}: pelvis speed {speed[:, 0].max():.1f} m/s"
    for side in range(2):
        still = contact[1:, side] & contact[:-1, side]
        step = np.linalg.norm(np.diff(joints[:, TOES[side]], axis=0), axis=-1)[still] * FPS
        assert step.size == 0 or step.max() < 0.05, f"{where}: planted foot slides at {step.max():.2f} m/s"


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_every_primitive_is_physically_plausible(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    for _ in range(3):
        body = random_body(rng)
        params = PRIMITIVES[name].sample(rng)
        track = PRIMITIVES[name].make(params, body, rng)
        joints = assemble(track, body)
        check_physics(joints, track.contact, f"{name} {params}")
        lengths = bone_lengths(joints[0])
        np.testing.assert_allclose(lengths, body.lengths, atol=1e-9)
        assert len(joints) >= 20, f"{name}: {len(joints)} frames is shorter than one second"


def test_there_are_at_least_twenty_primitives_with_parameters():
    assert len(PRIMITIVES) >= 20
    with_params = [n for n, p in PRIMITIVES.items() if p.sample(np.random.default_rng(0))]
    assert len(with_params) >= 18


def test_bodies_vary_within_the_stated_ranges():
    rng = np.random.default_rng(0)
    ratios = np.array([random_body(rng).lengths[1:] / DEFAULT_BONE_LENGTHS[1:] for _ in range(300)])
    assert 0.9 * 0.94 - 1e-9 <= ratios.min() and ratios.max() <= 1.1 * 1.06 + 1e-9
    assert ratios.std(axis=0).min() > 0.03  # every bone really varies
    np.testing.assert_allclose(ratios[:, 0], ratios[:, 1])  # left and right hips alike (symmetric body)


def _compound_contacts(events, body):
    track = chain_events(events, body)
    return assemble(track, body), track.contact


def test_compound_clips_are_continuous_and_plausible():
    for index in range(12):
        plan = plan_retrieval(index, seed=3)
        joints, contact = _compound_contacts(plan.events, Body(plan.body))
        check_physics(joints, contact, plan.key)
        assert len(joints) == plan.num_frames, "planned length must equal the rendered one"
        assert RETRIEVAL_MIN_FRAMES <= len(joints) <= RETRIEVAL_MAX_FRAMES
        spans = [(e.start, e.end) for e in plan.events]
        assert spans[0][0] == 0 and spans[-1][1] == len(joints)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_untrimmed_clip_is_long_plausible_and_has_moments_inside():
    plan = plan_localization(0, seed=1, seconds=(12.0, 16.0))
    joints, contact = _compound_contacts(plan.events, Body(plan.body))
    check_physics(joints, contact, plan.key)
    assert 12 * FPS <= len(joints) <= 16 * FPS + 200  # the last event may run past the target
    assert len(plan.events) >= 4
    for moment in plan.moments:
        assert 0 <= moment.first <= moment.last < len(plan.events)


def test_posture_rules_are_enforced():
    body = random_body(np.random.default_rng(0))
    with pytest.raises(PostureError, match="stand_up cannot follow walk"):
        chain_events([Event("walk", {"direction": "forward", "pace": "slow", "steps": 4}), Event("stand_up")], body)
    with pytest.raises(PostureError, match="walk cannot follow sit_down"):
        chain_events([Event("sit_down"), Event("walk", {"direction": "forward", "pace": "slow", "steps": 4})], body)


def test_same_seed_same_motion_and_planning_is_reproducible():
    a, b = plan_retrieval(5, seed=0), plan_retrieval(5, seed=0)
    assert [(e.name, e.params, e.seed) for e in a.events] == [(e.name, e.params, e.seed) for e in b.events]
    np.testing.assert_array_equal(perform(a.events, Body(a.body)), perform(b.events, Body(b.body)))
    c = plan_retrieval(5, seed=1)
    assert not np.array_equal(a.body, c.body)


# ----------------------------------------------------------------------------- meaning of parameters

def _canonical(name, params, seed=0):
    rng = np.random.default_rng(seed)
    body = random_body(rng)
    joints = perform([Event(name, params, seed=seed)], body)
    return ImportedMotion(joints, FPS, name).to_canonical()


@pytest.mark.parametrize("direction,axis,sign", [("forward", 2, 1), ("backward", 2, -1), ("left", 0, 1), ("right", 0, -1)])
def test_walking_goes_where_the_caption_says(direction, axis, sign):
    joints = _canonical("walk", {"direction": direction, "pace": "normal", "steps": 6})
    travel = joints[-1, 0] - joints[0, 0]  # canonical: starts facing +Z, the body's left is +X
    assert sign * travel[axis] > 0.6
    assert abs(travel[2 - axis]) < 0.25 * abs(travel[axis])


def test_running_is_faster_than_jogging_faster_than_walking():
    def speed(name, params):
        joints = _canonical(name, params)
        return np.linalg.norm(joints[-1, 0, [0, 2]] - joints[0, 0, [0, 2]]) / (len(joints) / FPS)
    walk = speed("walk", {"direction": "forward", "pace": "normal", "steps": 8})
    jog = speed("jog", {"direction": "forward", "steps": 8})
    run = speed("run", {"pace": "fast", "steps": 8})
    assert walk < jog < run


@pytest.mark.parametrize("side,angle", [("left", 90), ("right", 90), ("left", 180), ("right", 45)])
def test_turning_ends_facing_the_stated_way(side, angle):
    joints = _canonical("turn", {"side": side, "angle": angle})
    heading = np.degrees(facing_angles(joints[-1:]))[0]
    expected = angle if side == "left" else -angle  # heading grows towards the body's left (+X)
    assert abs((heading - expected + 180) % 360 - 180) < 15
    assert np.linalg.norm(joints[-1, 0, [0, 2]] - joints[0, 0, [0, 2]]) < 0.2  # on the spot


@pytest.mark.parametrize("side", ["left", "right"])
def test_side_specific_arm_and_leg_actions_use_that_side(side):
    raised, other = (20, 21) if side == "left" else (21, 20)
    wave = _canonical("wave", {"side": side, "count": 3})
    assert wave[:, raised, 1].max() > wave[:, 15, 1].max()  # the waving hand goes above the head
    assert wave[:, other, 1].max() < wave[:, 16, 1].min()  # the other hand stays below the shoulders
    kicker, stander = (10, 11) if side == "left" else (11, 10)
    kick = _canonical("kick", {"side": side, "height": "high", "count": 1})
    assert kick[:, kicker, 1].max() > 0.4
    assert kick[:, stander, 1].max() < 0.03


def test_counts_and_postures_are_what_the_caption_says():
    squats = _canonical("squat", {"count": 3})
    pelvis = squats[:, 0, 1]
    low = pelvis < pelvis.max() - 0.15
    assert np.count_nonzero(np.diff(low.astype(int)) == 1) == 3
    jumps = _canonical("jump", {"count": 2})
    airborne = jumps[:, TOES + ANKLES, 1].min(axis=1) > 0.04
    assert np.count_nonzero(np.diff(airborne.astype(int)) == 1) == 2
    sit = _canonical("sit_down", {})
    assert sit[-1, 0, 1] < sit[0, 0, 1] - 0.3
    arms = _canonical("raise_arms", {"side": "both", "height": "overhead"})
    assert (arms[:, [20, 21], 1].min(axis=1) > arms[:, 15, 1]).any()
    clap = _canonical("clap", {"count": 4})
    gap = np.linalg.norm(clap[:, 20] - clap[:, 21], axis=-1)
    assert gap.min() < 0.15 and gap[0] > 0.3


def test_demo_features_round_trip_like_imported_motion():
    joints = _canonical("jump_forward", {"count": 2}, seed=4)
    features = joints_to_features(joints)
    np.testing.assert_allclose(features_to_joints(features), joints[:-1], atol=1e-4)
    contacts = features[:, 259:]
    assert contacts.mean() > 0.3 and contacts.min() == 0.0  # planted and airborne frames both appear


def test_standing_feet_rest_on_the_floor_at_the_foot_pitch():
    body = random_body(np.random.default_rng(1))
    joints = assemble(PRIMITIVES["idle"].make({"seconds": 1.0}, body, np.random.default_rng(1)), body)
    np.testing.assert_allclose(joints[:, TOES, 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(joints[:, ANKLES, 1], body.foot * np.sin(FOOT_PITCH), atol=1e-6)
