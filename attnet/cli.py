"""The `attnet` command: train, evaluate, export, data, bench, reproduce."""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from attnet.config import ConfigError, apply_overrides, describe, load_config, presets


def _train(args: argparse.Namespace) -> None:
    from attnet.engine import fit, record
    overrides = list(args.overrides) + (["run.resume=true"] if args.resume else [])
    cfg = load_config(args.preset, overrides)
    run_dir = Path(cfg.run.out_dir) / cfg.run_name
    try:
        fit(cfg)
    except Exception:
        # the registry shows the run as failed, with its error; written only by the process that
        # holds the run's lock, so a refused second process leaves the running one's files alone
        record.write_error(run_dir, traceback.format_exc())
        record.release(run_dir)
        raise


def _evaluate(args: argparse.Namespace) -> None:
    from attnet.engine import evaluate
    from attnet.results import run_config
    run = Path(args.run)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"{run}: not a run directory (no config.yaml)")
    cfg = apply_overrides(run_config(run), args.overrides)
    ckpt = run / "checkpoints" / f"{args.checkpoint}.pt" if args.checkpoint in ("best", "last") else Path(args.checkpoint)
    metrics = evaluate(cfg, ckpt, subset=args.subset, scores_path=run / f"scores_{args.subset}_{ckpt.stem}.csv.gz")
    metrics.pop("confusion")
    print(json.dumps(metrics, indent=1))


def _export(args: argparse.Namespace) -> None:
    from attnet.hub import export
    print(f"{export(args.run, args.to)}: model.safetensors, config.json and README.md of {args.run}")


DELEGATED = {"data": ("attnet.data.cli", "datasets: synth, check, layout, reencode, extract-frames"),
             "bench": ("attnet.bench", "benchmarks: model, data, gpu, run"),
             "reproduce": ("attnet.reproduce", "run the notebooks 00-06 with papermill into reproduction/<preset>"),
             "replicate": ("attnet.replicate", "compare two results folders call by call")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnet", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Global and Local Knowledge-Aware Attention Network: reproduction kit.",
        epilog=f"presets: {', '.join(presets())}\n\noverride keys (key=value, YAML values) and defaults:\n{describe()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train, validate and test one configuration",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=f"presets: {', '.join(presets())}\n\noverride keys and defaults:\n{describe()}")
    p.add_argument("--preset", default="synthetic", help="a preset name (attnet/presets/) or a .yaml path")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. model.streams=[sa] optim.epochs=5")
    p.set_defaults(func=_train)
    p = sub.add_parser("evaluate", help="test a run's checkpoint (multi-clip)")
    p.add_argument("--run", required=True, help="run directory, e.g. results/runs/<name>")
    p.add_argument("--checkpoint", default="best", help="best, last or a path")
    p.add_argument("--subset", default="test", choices=["val", "test"])
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. data.num_clips=10 run.device=cpu")
    p.set_defaults(func=_evaluate)
    p = sub.add_parser("export", help="a finished run as a Hugging Face save_pretrained folder with a model card")
    p.add_argument("run", help="run directory, e.g. results/runs/<name>")
    p.add_argument("--to", required=True, help="the folder to write (model.push_to_hub or `hf upload` publishes it)")
    p.set_defaults(func=_export)
    for name, (_, text) in DELEGATED.items():      # listed for --help; main() hands them their argv
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:               # their own parsers own their options
        import importlib
        importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
        return
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError, RuntimeError) as err:   # config, data, checkpoint, divergence: one line
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
