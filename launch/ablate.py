"""The papers' ablations on the demo corpus in one command: `bash launch/ablate.sh` (which calls this).

Three studies; each arm is a training run that differs from its neighbours in one switch of
configs/ablation.yaml, trained once per seed and evaluated on the test split with the published
protocols (launch/evaluate.py):
- chronological negatives (CAR): text-motion retrieval with vs without event-shuffled captions as
  negatives, trained on the captions as written ("orig->event") and on their events concatenated
  in order ("event->event"); CAR accuracy and motion->text retrieval with the shuffled captions in
  the gallery;
- MLP variants: MLPBase vs MLP-S vs MLP on localization (Normal protocol IoU@0.5/0.7/0.9, mIoU),
  next to the temporal-pyramid baseline over the first text-motion seed's embeddings. Every head
  starts from a text-motion model's encoders (`run.init_from`: the pyramid's model, and for MLP a
  text-motion model with the same S-Enc) and trains 1600 steps at lr 1e-3: from scratch on the
  few untrimmed motions, or at half the steps, every variant stays undertrained (README,
  Ablations);
- modalities: 2-modal (text-motion) vs 3-modal (text-video-motion) retrieval; t2m and v2m R@k.
The table shows the mean and the sample standard deviation over the seeds, and each claim as a
paired difference against its reference arm, seed by seed (PAIRED). A run whose metrics exist is
reused, so an interrupted ablation continues where it stopped (delete --out to redo).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Arm:
    name: str
    task: str                      # retrieval | localization
    overrides: tuple[str, ...]
    init_from: str | None = None   # an arm whose first-seed export this arm starts from (`run.init_from`)


TASK_OVERRIDES = {
    "retrieval": ("model.use_localization=false",),
    "localization": ("model.use_retrieval=false", "model.retrieval.use_video=false", "data.caption_embedder=none",
                     "optim.lr=1.0e-3"),
}
ARMS = (
    Arm("text-motion", "retrieval", ("model.retrieval.use_video=false",)),
    Arm("text-motion, no chronological negatives", "retrieval",
        ("model.retrieval.use_video=false", "model.retrieval.use_chronological_negatives=false")),
    Arm("text-motion, event->event", "retrieval", ("model.retrieval.use_video=false", "data.train_captions=events")),
    Arm("text-motion, event->event, no chronological negatives", "retrieval",
        ("model.retrieval.use_video=false", "data.train_captions=events",
         "model.retrieval.use_chronological_negatives=false")),
    Arm("text-video-motion", "retrieval", ("model.retrieval.use_video=true",)),
    # MLP's starting point: its motion encoder reads the S-Enc's output, so it needs encoders trained with one.
    Arm("text-motion, S-Enc", "retrieval", ("model.retrieval.use_video=false", "model.retrieval.motion.use_gcn=true")),
    Arm("MLPBase", "localization", ("model.localization.variant=mlp_base",), init_from="text-motion"),
    Arm("MLP-S", "localization", ("model.localization.variant=mlp_s",), init_from="text-motion"),
    Arm("MLP", "localization", ("model.localization.variant=mlp", "model.retrieval.motion.use_gcn=true"),
        init_from="text-motion, S-Enc"),
)
PYRAMID_FROM = "text-motion"       # the retrieval model whose embeddings the pyramid baseline uses (first seed)
# Each claim as a paired difference (same seed) per study: arm - reference arm, on one column.
PAIRED = {
    "car": {"text-motion": ("text-motion, no chronological negatives", "CAR orig->event"),
            "text-motion, event->event": ("text-motion, event->event, no chronological negatives",
                                          "CAR event->event")},
    "localization": {"MLP-S": ("MLPBase", "IoU@0.7"), "MLP": ("MLP-S", "IoU@0.7")},
    "modalities": {"text-video-motion": ("text-motion", "t2m R@1")},
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def run_dir_of(args: argparse.Namespace, arm_name: str, seed: int) -> Path:
    return args.out / f"{slug(arm_name)}-seed{seed}"


def run_arm(arm: Arm, seed: int, args: argparse.Namespace, threads: int) -> Path:
    """Train (unless exported already) and evaluate (unless evaluated already); returns metrics.json."""
    run_dir = run_dir_of(args, arm.name, seed)
    metrics = run_dir / "eval" / "metrics.json"
    if metrics.is_file():
        return metrics
    env = _env(threads)
    log = run_dir / "log.txt"
    run_dir.mkdir(parents=True, exist_ok=True)
    steps = args.retrieval_steps if arm.task == "retrieval" else args.localization_steps
    data = args.data
    init = []
    if arm.init_from is not None:
        source = run_dir_of(args, arm.init_from, args.seeds[0]) / "export"
        if not (source / "config.yaml").is_file():
            raise RuntimeError(f"{arm.name} starts from {source}, which does not exist; "
                               f"run the {arm.init_from!r} arm first (--only \"{arm.init_from}\" --seeds {args.seeds[0]})")
        init = [f"run.init_from={source}"]
    with log.open("a") as out:
        if not (run_dir / "export" / "config.yaml").is_file():
            cmd = [sys.executable, "launch/train.py", "--config", str(args.config),
                   f"run.output_dir={run_dir}", f"run.seed={seed}", f"run.max_steps={steps}",
                   f"data.retrieval.index={data / 'retrieval' / 'shards.json'}",
                   f"data.localization.index={data / 'localization' / 'shards.json'}",
                   f"data.caption_cache={data / 'caption_embeddings.safetensors'}",
                   *TASK_OVERRIDES[arm.task], *arm.overrides, *init]
            _call(cmd, out, env, f"training {arm.name} (seed {seed})", log)
        cmd = [sys.executable, "launch/evaluate.py", "--model", str(run_dir / "export"), "--split", "test",
               "--out", str(run_dir / "eval"), "--num-plots", "0", "--no-pyramid", "--no-corpus"]
        cmd += ["--shards", str(data / "retrieval")] if arm.task == "retrieval" else \
            ["--localization-shards", str(data / "localization")]
        _call(cmd, out, env, f"evaluating {arm.name} (seed {seed})", log)
    return metrics


def run_pyramid(args: argparse.Namespace, seed: int, threads: int) -> Path:
    out_dir = args.out / "pyramid-baseline"
    metrics = out_dir / "metrics.json"
    if not metrics.is_file():
        model = run_dir_of(args, PYRAMID_FROM, seed) / "export"
        env = _env(threads)
        out_dir.mkdir(parents=True, exist_ok=True)
        log = out_dir / "log.txt"
        with log.open("a") as out:
            _call([sys.executable, "launch/evaluate.py", "--model", str(model), "--split", "test", "--out", str(out_dir),
                   "--num-plots", "0", "--localization-shards", str(args.data / "localization")],
                  out, env, "temporal-pyramid baseline", log)
    return metrics


def _env(threads: int) -> dict:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")


def _call(cmd: list[str], out, env: dict, what: str, log: Path) -> None:
    start = time.time()
    print(f"[ablate] {what} ...", flush=True)
    out.write("$ " + " ".join(cmd) + "\n")
    out.flush()
    if subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
        raise RuntimeError(f"{what} failed; see {log}")
    print(f"[ablate] {what}: done in {time.time() - start:.0f} s", flush=True)


# ---------------------------------------------------------------- the table

def _get(report: dict, path: str) -> float:
    for key in path.split("/"):
        report = report[key]
    return float(report)


COLUMNS = {
    "car": [("CAR orig->event", "car/orig_to_event"), ("CAR event->event", "car/event_to_event"),
            ("m->t R@1 +shuffled", "car/motion_to_text_with_shuffled/R@1"),
            ("m->t R@5 +shuffled", "car/motion_to_text_with_shuffled/R@5"),
            ("m->t R@10 +shuffled", "car/motion_to_text_with_shuffled/R@10"),
            ("m->events R@1 +shuffled", "car/motion_to_events_with_shuffled/R@1"),
            ("m->t R@1", "retrieval/motion_to_text/all/R@1")],
    "localization": [(k, f"localization/model/normal/{k}") for k in ("IoU@0.5", "IoU@0.7", "IoU@0.9", "mIoU")],
    "modalities": [("t2m R@1", "retrieval/text_to_motion/all/R@1"), ("t2m R@5", "retrieval/text_to_motion/all/R@5"),
                   ("t2m R@10", "retrieval/text_to_motion/all/R@10"), ("t2m MedR", "retrieval/text_to_motion/all/MedR"),
                   ("v2m R@1", "retrieval/video_to_motion/all/R@1"), ("v2m R@5", "retrieval/video_to_motion/all/R@5"),
                   ("v2m R@10", "retrieval/video_to_motion/all/R@10")],
}
STUDIES = (
    ("With vs without chronological negatives (text-motion retrieval)", "car",
     ["text-motion", "text-motion, no chronological negatives", "text-motion, event->event",
      "text-motion, event->event, no chronological negatives"]),
    ("MLPBase vs MLP-S vs MLP (localization, Normal protocol)", "localization",
     ["MLPBase", "MLP-S", "MLP"]),
    ("2-modal vs 3-modal (All protocol)", "modalities", ["text-motion", "text-video-motion"]),
)


def summarize(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def paired(runs: dict[int, dict], reference: dict[int, dict], path: str) -> dict | None:
    """arm - reference on the seeds both ran: mean ± sample std, and in how many seeds the arm is ahead."""
    seeds = sorted(set(runs) & set(reference))
    if not seeds:
        return None
    out = summarize([_get(runs[s], path) - _get(reference[s], path) for s in seeds])
    return dict(out, seeds=seeds, ahead=sum(d > 0 for d in out["values"]))


def _cell(s: dict | None) -> str:
    if s is None:
        return "n/a"
    return f"{s['mean']:.2f}" if len(s["values"]) == 1 else f"{s['mean']:.2f} ± {s['std']:.2f}"


def _paired_cell(d: dict | None, reference: str, label: str) -> str:
    if d is None:
        return ""
    return f"{d['mean']:+.2f} ± {d['std']:.2f} {label} vs {reference} ({d['ahead']} of {len(d['values'])} ahead)"


def build_table(reports: dict[str, dict[int, dict]], pyramid: dict | None, info: str) -> tuple[str, dict]:
    """reports: arm name -> {seed: metrics.json}. Markdown tables and their numbers (per arm, column)."""
    parts = [f"# trimo ablations on the demo corpus\n\n{info}  \nMean ± sample std over the seeds (their number "
             "in the seeds column); every number is a percentage except MedR. The paired column is the arm minus "
             "the reference arm seed by seed (mean ± std, and the seeds where the arm is ahead).\n"]
    summary: dict = {}
    for title, kind, arms in STUDIES:
        arms = [arm for arm in arms if reports.get(arm)]  # arms left out (--only) get no row
        if not arms:
            continue
        cols = COLUMNS[kind]
        rows, summary[kind] = [], {}
        for arm in arms:
            runs = reports[arm]
            cells = {}
            for label, path in cols:
                try:
                    cells[label] = summarize([_get(runs[s], path) for s in sorted(runs)])
                except KeyError:          # e.g. v2m for a model without a video encoder
                    cells[label] = None
            pair = ""
            ref_arm, ref_col = PAIRED[kind].get(arm, (None, None))
            if reports.get(ref_arm):
                cells["paired"] = paired(runs, reports[ref_arm], dict(cols)[ref_col])
                pair = _paired_cell(cells["paired"], ref_arm, ref_col)
            summary[kind][arm] = cells
            rows.append([arm] + [_cell(cells[label]) for label, _ in cols] + [str(len(runs)), pair])
        if kind == "localization" and pyramid is not None:
            rows.append(["temporal pyramid (t-m embeddings)"]
                        + [f"{_get(pyramid, f'localization/pyramid/normal/{k}'):.2f}" for k, _ in cols] + ["1", ""])
            summary[kind]["pyramid"] = {label: _get(pyramid, f"localization/pyramid/normal/{label}") for label, _ in cols}
        head = ["arm"] + [label for label, _ in cols] + ["seeds", "paired"]
        parts.append(f"\n## {title}\n\n| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
        parts += ["| " + " | ".join(row) + " |\n" for row in rows]
        if kind == "car":
            parts.append("\nThe event->event arms train on the ordered event texts (data.train_captions=events), the "
                         "CAR paper's event->event setting: read their CAR event->event column, and the other arms' "
                         "CAR orig->event. m->events: the gallery holds every item's ordered events and the "
                         "shuffled ones.\n")
        if kind == "localization":
            parts.append("\nEvery head starts from the encoders of the first text-motion seed's model "
                         "(`run.init_from`), the model the pyramid uses, MLP from a text-motion model trained with "
                         "its S-Enc (\"text-motion, S-Enc\", first seed), and trains at lr 1e-3.\n")
    return "".join(parts), summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data/demo-default"), help="demo corpus (tools.build_demo --out)")
    p.add_argument("--out", type=Path, default=Path("runs/ablate"))
    p.add_argument("--config", type=Path, default=Path("configs/ablation.yaml"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the retrieval arms")
    p.add_argument("--localization-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                   help="seeds of the localization arms (more: their seed-to-seed spread is the widest)")
    p.add_argument("--retrieval-steps", type=int, default=250)
    p.add_argument("--localization-steps", type=int, default=1600)
    p.add_argument("--jobs", type=int, default=2, help="runs trained at once (each gets cores / jobs threads)")
    p.add_argument("--only", nargs="+", default=None, help="arms to run (names as in the table)")
    return p.parse_args(argv)


def plan_runs(args: argparse.Namespace) -> list[tuple[Arm, int]]:
    """(arm, seed) for every run: the selected arms on their seeds, and the arms they start from
    (an arm that no study shows, or one not selected, on the first seed only); longest first, so
    the last job to start is a short one."""
    arms = [a for a in ARMS if args.only is None or a.name in args.only]
    if args.only and len(arms) != len(args.only):
        sys.exit(f"ablate: --only names must be among {[a.name for a in ARMS]}")
    starts = {a.init_from for a in arms} - {None} - {a.name for a in arms}
    arms += [a for a in ARMS if a.name in starts]
    shown = {name for _, _, names in STUDIES for name in names}

    def seeds_of(arm: Arm) -> list[int]:
        if arm.task == "localization":
            return args.localization_seeds
        return args.seeds if arm.name in shown and arm.name not in starts else args.seeds[:1]

    return sorted(((a, s) for a in arms for s in seeds_of(a)),
                  key=lambda x: (x[0].task != "retrieval", "video" not in x[0].name,
                                 "model.retrieval.motion.use_gcn=true" not in x[0].overrides))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for what, path in (("--data", args.data / "retrieval" / "shards.json"),
                       ("--data", args.data / "localization" / "shards.json"), ("--config", args.config)):
        if not (REPO / path).is_file() and not path.is_file():
            sys.exit(f"ablate: {path} does not exist; build the corpus with "
                     f"`trimo-build-demo --out {args.data} --size default` or fix {what}")
    order = plan_runs(args)
    arms = {a for a, _ in order}
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    start = time.time()
    results = {}
    # arms that start from another arm's model run once every other run is done
    for phase in (False, True):
        todo = [(a, s) for a, s in order if (a.init_from is not None) == phase]
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(run_arm, a, s, args, threads): (a, s) for a, s in todo}
            results.update({key: fut.result() for fut, key in futures.items()})
    pyramid = None
    if any(a.name == PYRAMID_FROM for a in arms):
        pyramid = json.loads(run_pyramid(args, args.seeds[0], os.cpu_count() or 2).read_text())
    reports: dict[str, dict[int, dict]] = {}
    for (arm, seed), path in results.items():
        reports.setdefault(arm.name, {})[seed] = json.loads(path.read_text())
    some = next(iter(results.values()))
    test_items = json.loads(some.read_text()).get("retrieval", {}).get("n_items")
    info = (f"Corpus `{args.data}` (generated demo data, not HumanML3D/BABEL), test split"
            + (f" ({test_items} retrieval items)" if test_items else "")
            + f"; {args.retrieval_steps} retrieval / {args.localization_steps} localization steps per run, "
              f"config `{args.config}`.")
    table, summary = build_table(reports, pyramid, info)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.md").write_text(table)
    (args.out / "ablation.json").write_text(json.dumps({"seeds": args.seeds, "localization_seeds": args.localization_seeds,
                                                        "summary": summary}, indent=1))
    print(table)
    print(f"[ablate] wrote {args.out / 'ablation.md'} and ablation.json; {len(results)} runs, "
          f"{time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
