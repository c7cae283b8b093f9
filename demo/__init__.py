"""trimo's built-in demo corpus: procedural motions on the 22-joint skeleton with HumanML3D-style captions.

Real captioned motion datasets cannot be downloaded everywhere, so the quickstart and the tests
train on motions trimo makes itself. Modules, in the order data flows:

- `body`        per-instance bone lengths, the `Track` a primitive returns, and `assemble`
                (upper body by forward kinematics, legs by two-bone IK onto foot targets);
- `pose`        named joint angles (arm raise, elbow bend, trunk bend, ...) -> local rotations;
- `gait`        footstep placement for every kind of stepping (planted feet never slide);
- `primitives`  the 25 parameterized actions of the "core" group (`PRIMITIVES`: walk, jog, run, turn,
                jump, kick, wave, ...) and the 6 whole-body moves of the "extended" group (cartwheel,
                backflip, forward roll, crawl, getting up from the floor, dance), scripted as keyframes;
- `compose`     chaining events with carried root and slerp-blended transitions (`Event`, `perform`);
- `captions`    templates, modifiers and ordering connectives (`describe`);
- `corpus`      generator versions, clip plans, splits, leakage rule, and shard samples (`plan_retrieval`,
                `plan_localization`, `assign_captions`, `render_sample`);
- `video`       stick-figure mp4 of a motion; `build` writes both shard sets (`build_demo`).

The command line is `tools/build_demo.py`.
"""
