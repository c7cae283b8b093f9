"""Train trimo: `accelerate launch --config_file accelerate_config.yaml -m launch.train --config configs/X.yaml [a.b=c ...]`.

Also runs as a plain single process (`trimo-train --config ...`) for debugging.
`--resume latest|best|PATH` continues a run bitwise-identically (same ZeRO stage and world size).
After training, the final model is exported to <output_dir>/export (model.safetensors, config,
LoRA adapter), loadable with trainer.export.load_model.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before anything imports deepspeed
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    from configs.loading import split_cli

    overrides, rest = split_cli(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", default=[], help="experiment YAML (repeat to layer several)")
    parser.add_argument("--resume", default=None, help="latest | best | a checkpoint directory")
    parser.add_argument("--no-export", action="store_true", help="skip the export after training")
    return parser.parse_args(rest), overrides


def main(argv: list[str] | None = None, callback=None) -> int:
    """`callback`: a trainer.callback.Callback the loop calls (the tests' fault injection)."""
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    from shards.schema import ShardError
    from trainer.checkpoint import CheckpointError
    from configs.loading import ConfigError
    from configs.schema import load_experiment
    from trainer.loop import NonFiniteLossError, Trainer

    try:
        if not args.config:
            raise ConfigError("pass --config configs/<experiment>.yaml (e.g. configs/quickstart.yaml)")
        cfg = load_experiment(args.config, overrides)
        trainer = Trainer(cfg, resume=args.resume, callback=callback)
        result = trainer.fit()
        if not args.no_export and result["status"] == "finished":
            from trainer.export import export_model

            path = export_model(trainer.accelerator, trainer.model, cfg, os.path.join(cfg.run.output_dir, "export"))
            if trainer.accelerator.is_main_process:
                print(f"[trimo] exported the model to {path}", flush=True)
        trainer.accelerator.end_training()
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # Everything is written and the process group is gone; the interpreter's teardown of
            # the CPU communication library's threads has aborted a finished rank (SIGABRT, the
            # launcher then reports the run failed), so a launched rank leaves without it.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    except (ConfigError, CheckpointError, ShardError, FileNotFoundError, NonFiniteLossError) as err:
        print(f"[trimo] error: {err}", file=sys.stderr, flush=True)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # other ranks may wait in a collective for this one: leave now, so the launcher
            # stops them, instead of hanging in process-group teardown
            os._exit(2)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
