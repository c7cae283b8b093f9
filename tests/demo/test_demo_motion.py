"""Demo corpus motions: physical plausibility of every primitive, compound and untrimmed clips,
and that each primitive's parameters mean what its captions say."""
import zlib

import numpy as np
import pytest

from demo.body import FOOT_PITCH, Body, Track, assemble, axis_quat, chain, leg_targets, random_body
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
        joints, contact = _compound_contacts(plan.events, plan.performer)
        check_physics(joints, contact, plan.key)
        assert len(joints) == plan.num_frames, "planned length must equal the rendered one"
        assert RETRIEVAL_MIN_FRAMES <= len(joints) <= RETRIEVAL_MAX_FRAMES
        spans = [(e.start, e.end) for e in plan.events]
        assert spans[0][0] == 0 and spans[-1][1] == len(joints)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_untrimmed_clip_is_long_plausible_and_has_moments_inside():
    plan = plan_localization(0, seed=1, seconds=(12.0, 16.0))
    joints, contact = _compound_contacts(plan.events, plan.performer)
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
    np.testing.assert_array_equal(perform(a.events, a.performer), perform(b.events, b.performer))
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


# ----------------------------------------------------------------------------- generator 2: whole-body moves, girdle

def _forward(joints):
    """The body's front (T, 3): across (right hip -> left hip) x up (pelvis -> neck)."""
    across, up = joints[:, 1] - joints[:, 2], joints[:, 12] - joints[:, 0]
    front = np.cross(across, up)
    return front / np.linalg.norm(front, axis=-1, keepdims=True)


def test_leg_targets_make_assemble_reproduce_legs_posed_by_angles():
    from motion.rotations import qnormalize

    rng = np.random.default_rng(0)
    body = random_body(rng, girdle="rest")   # the upper body as given (the anatomical girdle turns the collars)
    n = 40
    pelvis = qnormalize(rng.normal(size=(n, 4)))        # any pelvis rotation: lying, upside down...
    root = np.column_stack([rng.normal(size=n), rng.uniform(0.5, 1.5, n), rng.normal(size=n)])
    legs = np.empty((n, 2, 3, 4))
    for side in range(2):
        thigh = chain(axis_quat(2, rng.uniform(-0.5, 0.5, n)), axis_quat(0, -rng.uniform(-0.5, 2.0, n)))
        legs[:, side] = np.stack([thigh, axis_quat(0, rng.uniform(0.2, 2.3, n)), axis_quat(0, rng.uniform(0, 1.5, n))], 1)
    local = np.zeros((n, 22, 4))
    local[..., 0] = 1.0
    local[:, 0] = pelvis
    local[:, [4, 7, 10]], local[:, [5, 8, 11]] = legs[:, 0], legs[:, 1]
    expected = body.skeleton.forward_kinematics(local, root)       # the legs by plain forward kinematics

    feet, yaw, pitch, pole = leg_targets(body, root, pelvis, legs)
    track = Track.standing(body, n)
    track.root_xz, track.pelvis_y, track.local = root[:, [0, 2]], root[:, 1], local.copy()
    track.local[:, [4, 7, 10, 5, 8, 11]] = (1.0, 0.0, 0.0, 0.0)   # assemble must find the legs itself
    track.feet, track.foot_yaw, track.foot_pitch, track.knee_pole = feet, yaw, pitch, pole
    np.testing.assert_allclose(assemble(track, body), expected, atol=1e-6)


def test_whole_body_moves_do_what_their_captions_say():
    stand = _canonical("idle", {"seconds": 1.0})[:, 0, 1].mean()
    for side, sign in (("left", 1), ("right", -1)):
        wheel = _canonical("cartwheel", {"side": side, "count": 1})
        assert (wheel[:, 15, 1] < wheel[:, 0, 1] - 0.3).any()          # upside down on the way
        assert sign * (wheel[-1, 0, 0] - wheel[0, 0, 0]) > 1.2           # sideways, to the named side
        assert abs(wheel[-1, 0, 2] - wheel[0, 0, 2]) < 0.3
    flip = _canonical("backflip", {})
    upside_down = flip[:, 15, 1] < flip[:, 0, 1]
    assert upside_down.any() and flip[upside_down, :, 1].min() > 0.2   # inverted in the air
    assert flip[-1, 0, 2] - flip[0, 0, 2] < -0.1                       # lands behind where it took off
    roll = _canonical("roll", {"count": 1})
    assert (roll[:, 15, 1] < roll[:, 0, 1]).any() and roll[:, 0, 1].min() < 0.5 * stand
    assert roll[-1, 0, 2] - roll[0, 0, 2] > 0.6                        # forward
    crawl = _canonical("crawl", {"steps": 6})
    middle = crawl[len(crawl) // 3: 2 * len(crawl) // 3]
    assert middle[:, 0, 1].max() < 0.75 * stand                        # low, on all fours
    assert np.abs(middle[:, 12, 1] - middle[:, 0, 1]).max() < 0.3      # the back about level
    assert middle[:, [20, 21], 1].min() < 0.08 and middle[:, [4, 5], 1].min() < 0.08  # hands and knees down
    assert crawl[-1, 0, 2] - crawl[0, 0, 2] > 0.5
    for face, sign in (("down", -1), ("up", 1)):
        rise = _canonical("get_up", {"face": face})
        assert rise[0, 0, 1] < 0.3 and sign * _forward(rise[:1])[0, 1] > 0.8   # lying, facing the floor or the sky
        assert abs(rise[-1, 0, 1] - stand) < 0.1 and _forward(rise[-1:])[0, 1] > -0.2  # ends standing
    for arms in ("up", "swing"):
        dance = _canonical("dance", {"arms": arms, "steps": 8})
        above = (dance[:, [20, 21], 1].max(axis=1) > dance[:, 15, 1]).mean()
        assert above > 0.3 if arms == "up" else above == 0
        assert np.linalg.norm(dance[-1, 0, [0, 2]] - dance[0, 0, [0, 2]]) < 0.3   # in place


def test_generator_2_adds_the_whole_body_moves_and_generator_1_does_not():
    extended = {n for n, p in PRIMITIVES.items() if p.group == "extended"}
    assert extended == {"cartwheel", "backflip", "roll", "crawl", "get_up", "dance"}
    old = [plan_retrieval(i, seed=0, generator=1) for i in range(200)]
    assert not {e.name for p in old for e in p.events} & extended
    assert {p.performer.girdle for p in old} == {"rest"}
    plans = [plan_retrieval(i, seed=0, generator=2) for i in range(200)]
    assert extended <= {e.name for p in plans for e in p.events}
    assert {p.performer.girdle for p in plans} == {"anatomical"}
    for plan in plans:     # a clip may begin lying; nothing else starts on the floor
        assert all(e.name != "get_up" for e in plan.events[1:])
    for plan in plans[:6] + [plan_localization(0, seed=2, seconds=(20.0, 30.0), generator=2)]:
        joints, contact = _compound_contacts(plan.events, plan.performer)
        check_physics(joints, contact, plan.key)
        assert len(joints) == plan.num_frames
    with pytest.raises(ValueError, match="demo generator must be one of"):
        plan_retrieval(0, seed=0, generator=3)


def _real_walk(source: str) -> np.ndarray:
    from pathlib import Path
    from motion.importers import load_motion

    if source == "cmu":
        return load_motion(Path(__file__).parents[1] / "fixtures" / "cmu_walk_60fps.amc").to_canonical()
    pybullet_data = pytest.importorskip("pybullet_data", reason="pybullet (a dev extra) ships the DeepMimic walk")
    return load_motion(Path(pybullet_data.getDataPath()) / "data/motions/humanoid3d_walk.txt").to_canonical()


@pytest.mark.parametrize("source", ["cmu", "deepmimic"])
def test_the_anatomical_girdle_puts_the_arms_where_real_mocap_has_them(source):
    """Heights above the pelvis of shoulder, elbow and wrist, averaged over a real walk, against
    the demo's forward walk performed by each girdle."""
    arm = [16, 18, 20]

    def heights(joints):
        features = joints_to_features(joints)
        ric = features[:, 4:67].reshape(-1, 21, 3)
        return (ric[:, [j - 1 for j in arm], 1] - features[:, 3:4]).mean(0)

    want = heights(_real_walk(source))
    walk = {"direction": "forward", "pace": "normal", "steps": 6}
    error = {}
    for girdle in ("anatomical", "rest"):
        body = Body(DEFAULT_BONE_LENGTHS.copy(), girdle)
        error[girdle] = np.abs(heights(ImportedMotion(perform([Event("walk", walk)], body), FPS, "walk").to_canonical())
                               - want).mean()
    assert error["anatomical"] < 0.07 and error["rest"] > 0.18, error
