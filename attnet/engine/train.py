"""fit(cfg): train with the GLKA loss, validate each epoch, test the best checkpoint, and
record the run under results/runs/<name>/."""
from __future__ import annotations

import json
import math
import platform
import random
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel

from attnet.config import Config
from attnet.data import build_loader
from attnet.data.datasets import has_validation
from attnet.losses import GLKALoss

from . import checkpoint, distributed
from .build import autocast, build_datasets, build_model, build_optimizer, dataset_root
from .distributed import DistInfo
from .evaluate import predict, scores_frame
from .metrics import summarize, topk_accuracy
from .progress import Progress


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class RunExists(FileExistsError):
    """The run directory holds another run."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cosine(epochs: int):
    """The authors' per-epoch schedule: lr(e) = 0.5 (1 + cos(pi e / E)) base, e = 0..E-1."""
    return lambda e: 0.5 * (1 + math.cos(math.pi * e / epochs))


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _environment(device: torch.device) -> dict:
    import torchvision
    versions = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    return {"git_commit": _git_commit(), "versions": versions, "device": name}


def _summary(cfg: Config) -> dict:
    """The settings that tell runs apart in a results table."""
    m = cfg.model
    return {"dataset": cfg.data.name, "backbone": m.backbone, "streams": "+".join(m.streams),
            "fusion_layer": m.fusion_layer, "temporal": m.temporal, "ga_reg": m.ga_reg,
            "segments": cfg.data.segments, "num_clips": cfg.data.num_clips, "seed": cfg.run.seed,
            "selection": _selection(cfg)}


def _selection(cfg: Config) -> str:
    """How the tested checkpoint was chosen: "val", "test" (the authors' protocol on UCF101 /
    HMDB51: the reported number was selected on the test set) or "last epoch" (no val set)."""
    d = cfg.data
    if d.name in ("ucf101", "hmdb51") and d.select_on_test:
        return "test"
    return "val" if has_validation(d.name, d.val_fraction, d.select_on_test) else "last epoch"


def _prepare_run_dir(cfg: Config, info: DistInfo) -> tuple[Path, bool]:
    """(run dir, finished?) after applying run.resume / run.overwrite."""
    run_dir = Path(cfg.run.out_dir) / cfg.run_name
    finished = (run_dir / "final.json").is_file()
    if cfg.run.resume:
        return run_dir, finished
    if run_dir.exists() and any(run_dir.iterdir()):
        if not cfg.run.overwrite:
            raise RunExists(f"{run_dir}: a run of this name exists; pass run.resume=true to continue it, "
                            "run.overwrite=true to replace it, or another run.name")
        if info.is_main:
            shutil.rmtree(run_dir)
    distributed.barrier(info)
    return run_dir, False


def train_one_epoch(model, loader, criterion, optimizer, scaler, cfg: Config, info: DistInfo,
                    epoch: int, ckpt_dir: Path) -> dict:
    """One pass over the training data; returns the epoch's mean loss parts and train accuracy."""
    model.train()
    totals: dict[str, float] = {}
    correct: dict[str, int] = {}
    seen = 0
    progress = Progress(len(loader), f"epoch {epoch + 1}/{cfg.optim.epochs}", cfg.run.log_every, info.is_main)
    for step, (clips, labels) in enumerate(loader):
        clips = clips.to(info.device, non_blocking=True)
        labels = labels.to(info.device, non_blocking=True)
        with autocast(cfg, info.device):
            out = model(clips)
        loss, parts = criterion(out, labels)   # in float32: the logits are upcast by the loss
        if not torch.isfinite(loss):
            values = ", ".join(f"{k}={v.item():.4g}" for k, v in parts.items())
            raise TrainingDiverged(f"non-finite loss at epoch {epoch + 1}, step {step + 1} ({values}); the last good "
                                   f"checkpoint is {ckpt_dir / 'last.pt'}; lower optim.lr or set optim.clip_grad")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.optim.clip_grad:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        n = labels.shape[0]
        seen += n
        for k, v in {"loss": loss, **{f"loss_{k}": v for k, v in parts.items()}}.items():
            totals[k] = totals.get(k, 0.0) + v.item() * n
        with torch.no_grad():
            for name, logits in {"fused": out.logits, **out.stream_logits}.items():
                correct[name] = correct.get(name, 0) + int(logits.argmax(1).eq(labels).sum())
        progress.update(n, loss=loss.item())
    clips_per_s = progress.close() * info.world_size
    stats = torch.tensor([seen, *totals.values(), *correct.values()], dtype=torch.float64)
    if info.enabled:                                   # sum over processes
        stats = stats.to(info.device)
        torch.distributed.all_reduce(stats)
        stats = stats.cpu()
    seen_all = stats[0].item()
    row = {k: stats[1 + i].item() / seen_all for i, k in enumerate(totals)}
    for i, name in enumerate(correct):
        key = "train_top1" if name == "fused" else f"train_{name}_top1"
        row[key] = 100.0 * stats[1 + len(totals) + i].item() / seen_all
    row["clips_per_s"] = clips_per_s
    return row


def fit(cfg: Config) -> Path:
    """Train, validate and test one configuration; returns the run directory."""
    started = time.perf_counter()
    info = distributed.setup(cfg.run.device, cfg.run.threads)
    run_dir, finished = _prepare_run_dir(cfg, info)
    if finished:
        if info.is_main:
            print(f"{run_dir}: finished earlier (final.json present); nothing to do")
        return run_dir
    ckpt_dir = run_dir / "checkpoints"
    if info.is_main and not (run_dir / "config.yaml").is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    seed_everything(cfg.run.seed)
    if info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    root = dataset_root(cfg, info)
    data = build_datasets(cfg, ("train", "val"), root)
    classes = data["train"].classes
    model = build_model(cfg, len(classes), info.device)
    net = DistributedDataParallel(model, device_ids=[info.device] if info.device.type == "cuda" else None) \
        if info.enabled else model
    train_loader = build_loader(data["train"], cfg.data.batch_size, train=True, workers=cfg.data.workers,
                                distributed=info.enabled, seed=cfg.run.seed, persistent_workers=False)
    if len(train_loader) == 0:
        raise ValueError(f"data.batch_size={cfg.data.batch_size} exceeds the {len(train_loader.sampler)} training "
                         f"videos per process: no full batch to train on; lower data.batch_size")
    criterion = GLKALoss(ga_reg=cfg.model.ga_reg, margin=cfg.model.ga_margin)
    optimizer = build_optimizer(cfg, model)
    schedule = cosine(cfg.optim.epochs) if cfg.optim.schedule == "cosine" else (lambda e: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    scaler = torch.amp.GradScaler("cuda", enabled=info.device.type == "cuda" and cfg.optim.amp == "fp16")

    start_epoch, best_top1, rows = 0, -1.0, []
    if cfg.run.resume and (ckpt_dir / "last.pt").is_file():
        state = checkpoint.load(ckpt_dir / "last.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        start_epoch, best_top1 = state["epoch"] + 1, state["best_top1"]
        rows = pd.read_csv(run_dir / "metrics.csv").to_dict("records")[:start_epoch]
        if info.is_main:
            print(f"resuming {run_dir} after epoch {start_epoch}")

    for epoch in range(start_epoch, cfg.optim.epochs):
        tic = time.perf_counter()
        train_loader.generator.manual_seed(cfg.run.seed * 100_003 + epoch)   # this epoch's order and worker seeds
        if info.enabled:
            train_loader.sampler.set_epoch(epoch)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        row |= train_one_epoch(net, train_loader, criterion, optimizer, scaler, cfg, info, epoch, ckpt_dir)
        skipped = data["train"].reset_skipped()
        if skipped and info.is_main:
            print(f"epoch {epoch + 1}: {skipped} bad videos skipped (data.on_bad_video=skip)")
        if "val" in data and ((epoch + 1) % cfg.run.eval_every == 0 or epoch + 1 == cfg.optim.epochs):
            labels, scores, _ = predict(model, data["val"], cfg, info, desc="val")
            row["val_top1"] = topk_accuracy(scores["fused"], labels, 1)
            row |= {f"val_{s}_top1": topk_accuracy(scores[s], labels, 1) for s in model.streams}
        scheduler.step()
        row["seconds"] = time.perf_counter() - tic
        rows.append(row)
        # without a val set, best.pt is the last epoch's: what is tested, and what notebooks load
        improved = row.get("val_top1", -1.0) > best_top1 if "val" in data else epoch + 1 == cfg.optim.epochs
        best_top1 = max(best_top1, row.get("val_top1", -1.0))
        if info.is_main:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
                     "best_top1": best_top1, "rng": checkpoint.rng_state(), "config": cfg.to_dict(),
                     "classes": classes}
            if improved:
                checkpoint.save_atomic(state, ckpt_dir / "best.pt")
            checkpoint.save_atomic(state, ckpt_dir / "last.pt")
            _write_csv(pd.DataFrame(rows), run_dir / "metrics.csv")
            print(f"epoch {epoch + 1}: " + " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"), flush=True)
        distributed.barrier(info)

    test = build_datasets(cfg, ("test",), root)["test"]
    best = checkpoint.load(ckpt_dir / "best.pt") if (ckpt_dir / "best.pt").is_file() else None
    if best is not None:
        model.load_state_dict(best["model"])
    labels, scores, order = predict(model, test, cfg, info, desc="test")
    metrics = summarize(scores, labels, len(classes))
    if info.is_main:
        _write_csv(scores_frame(test, labels, scores, order), run_dir / "scores.csv.gz")
        final = {"run": cfg.run_name, "preset": cfg.preset, "test": metrics, "classes": classes,
                 "best_val_top1": best_top1, "epochs": cfg.optim.epochs, "config": _summary(cfg),
                 "wall_time_s": time.perf_counter() - started, "world_size": info.world_size,
                 **_environment(info.device)}
        tmp = run_dir / "final.json.tmp"
        tmp.write_text(json.dumps(final, indent=1))
        tmp.replace(run_dir / "final.json")
        print(f"{run_dir}: test top1 {metrics['top1']:.2f} top5 {metrics['top5']:.2f} "
              + " ".join(f"{s}={metrics[f'{s}_top1']:.2f}" for s in model.streams))
    return run_dir


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name("tmp-" + path.name)
    frame.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)
