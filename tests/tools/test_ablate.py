"""The ablation table: mean and sample std over seeds, paired differences, missing protocols, the pyramid row."""
import statistics

import pytest

from launch.ablate import ARMS, COLUMNS, build_table, paired, parse_args, plan_runs, run_arm, slug


def report(car: float, m2t: float, t2m_r10: float, video: float | None = None, iou07: float = 0.0) -> dict:
    ret = {"motion_to_text": {"all": {"R@1": m2t}},
           "text_to_motion": {"all": {"R@1": t2m_r10 / 4, "R@5": t2m_r10 / 2, "R@10": t2m_r10, "MedR": 7.0}}}
    if video is not None:
        ret["video_to_motion"] = {"all": {"R@1": video, "R@5": video, "R@10": video}}
    loc = {"model": {"normal": {"IoU@0.5": 2 * iou07, "IoU@0.7": iou07, "IoU@0.9": iou07 / 2, "mIoU": 30.0}}}
    return {"retrieval": ret, "localization": loc,
            "car": {"orig_to_event": car, "event_to_event": 50.0,
                    "motion_to_text_with_shuffled": {"R@1": m2t - 1, "R@5": m2t, "R@10": m2t + 1}}}


def test_table_has_mean_and_sample_std_per_arm_and_na_for_missing_protocols():
    reports = {"text-motion": {0: report(90.0, 10.0, 40.0), 1: report(96.0, 12.0, 44.0)},
               "text-motion, no chronological negatives": {0: report(60.0, 9.0, 41.0), 1: report(64.0, 9.0, 43.0)},
               "text-video-motion": {0: report(92.0, 11.0, 46.0, video=20.0), 1: report(94.0, 11.0, 48.0, video=30.0)},
               "MLPBase": {0: report(0, 0, 0, iou07=10.0), 1: report(0, 0, 0, iou07=12.0)},
               "MLP-S": {1: report(0, 0, 0, iou07=18.0), 0: report(0, 0, 0, iou07=14.0)}}
    pyramid = {"localization": {"pyramid": {"normal": {"IoU@0.5": 5.0, "IoU@0.7": 2.0, "IoU@0.9": 1.0,
                                                       "mIoU": 11.0}}}}
    text, summary = build_table(reports, pyramid, "info")
    car = summary["car"]["text-motion"]["CAR orig->event"]
    assert car["mean"] == 93.0 and car["std"] == statistics.stdev([90.0, 96.0]) and car["values"] == [90.0, 96.0]
    assert "| text-motion | 93.00 ± 4.24 |" in text
    assert summary["modalities"]["text-motion"]["v2m R@1"] is None           # no video encoder: n/a
    assert summary["modalities"]["text-video-motion"]["v2m R@1"]["mean"] == 25.0
    assert summary["localization"]["MLP-S"]["IoU@0.7"]["mean"] == 16.0
    assert "MLP" not in summary["localization"] and "| MLP |" not in text   # arm not run: no row
    assert "| MLP-S | 32.00 ± 5.66 | 16.00 ± 2.83 | 8.00 ± 1.41 | 30.00 ± 0.00 | 2 |" in text
    # paired by seed: MLP-S - MLPBase = 4 and 6 at IoU@0.7 (seeds given out of order on purpose)
    pair = summary["localization"]["MLP-S"]["paired"]
    assert pair["values"] == [4.0, 6.0] and pair["seeds"] == [0, 1] and pair["ahead"] == 2
    assert "+5.00 ± 1.41 IoU@0.7 vs MLPBase (2 of 2 ahead)" in text
    # 3-modal - 2-modal t2m R@1: 46/4 - 40/4 = 1.5 and 48/4 - 44/4 = 1.0
    assert summary["modalities"]["text-video-motion"]["paired"]["values"] == [1.5, 1.0]
    assert summary["car"]["text-motion"]["paired"]["values"] == [30.0, 32.0]
    assert "paired" not in summary["localization"]["MLPBase"]                   # a reference arm has no pair
    assert summary["localization"]["pyramid"]["mIoU"] == 11.0
    assert "| temporal pyramid (t-m embeddings) | 5.00 | 2.00 | 1.00 | 11.00 | 1 |" in text
    assert text.count("\n## ") == 3 and all(label in text for label, _ in COLUMNS["modalities"])


def test_single_seed_shows_no_spread_and_run_folders_are_distinct():
    text, _ = build_table({"text-motion": {0: report(90.0, 10.0, 40.0)}}, None, "info")
    assert "| text-motion | 90.00 | 50.00 |" in text
    assert text.count("\n## ") == 2 and "MLPBase" not in text  # the localization study was not run
    assert len({slug(a.name) for a in ARMS}) == len(ARMS)


def test_paired_uses_only_the_seeds_both_arms_ran():
    arm = {0: report(0, 0, 0, iou07=5.0), 2: report(0, 0, 0, iou07=9.0), 3: report(0, 0, 0, iou07=1.0)}
    ref = {0: report(0, 0, 0, iou07=6.0), 2: report(0, 0, 0, iou07=3.0)}
    d = paired(arm, ref, "localization/model/normal/IoU@0.7")
    assert d["seeds"] == [0, 2] and d["values"] == [-1.0, 6.0] and d["ahead"] == 1
    assert paired(arm, {7: ref[0]}, "localization/model/normal/IoU@0.7") is None


def test_an_arm_that_starts_from_another_names_the_missing_model(tmp_path):
    args = parse_args(["--out", str(tmp_path), "--seeds", "4"])
    arm = next(a for a in ARMS if a.init_from)
    with pytest.raises(RuntimeError, match=r"text-motion-seed4/export, which does not exist"):
        run_arm(arm, 0, args, threads=1)


def test_plan_runs_adds_the_models_the_heads_start_from_on_the_first_seed_only():
    runs = plan_runs(parse_args(["--only", "MLP-S", "MLP", "--seeds", "3", "4", "--localization-seeds", "0", "1"]))
    names = [(a.name, s) for a, s in runs]
    # the heads' starting points, on the first retrieval seed, before every head (they run first)
    assert names[:2] == [("text-motion, S-Enc", 3), ("text-motion", 3)]
    assert sorted(names[2:]) == [("MLP", 0), ("MLP", 1), ("MLP-S", 0), ("MLP-S", 1)]
    assert names[2][0] == "MLP"                                # the slowest head first
    # a selected retrieval arm runs on every seed; the S-Enc model, shown in no study, on the first only
    runs = plan_runs(parse_args(["--only", "text-motion", "MLP", "--seeds", "3", "4", "--localization-seeds", "0"]))
    assert sorted((a.name, s) for a, s in runs if a.task == "retrieval") == [
        ("text-motion", 3), ("text-motion", 4), ("text-motion, S-Enc", 3)]
    with pytest.raises(SystemExit, match="--only names must be among"):
        plan_runs(parse_args(["--only", "MLP-Q"]))
