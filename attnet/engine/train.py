"""fit(cfg): train with the GLKA loss, validate each epoch, test the best checkpoint, and
record the run under results/runs/<name>/."""
from __future__ import annotations

import dataclasses
import platform
import time
from pathlib import Path

import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel

from attnet.config import Config
from attnet.data import build_loader, to_device
from attnet.data.datasets import has_validation
from attnet.files import git_commit, save_atomic, write_csv
from attnet.losses import GLKALoss
from attnet.machine import cpu_facts, cpu_label

from . import checkpoint, distributed, record, runtime
from .board import Board
from .build import build_datasets, build_model, build_optimizer, build_scheduler, check_lists, dataset_root
from .distributed import DistInfo
from .evaluate import predict, scores_frame
from .metrics import summarize, topk_accuracy
from .progress import Progress


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class RunExists(FileExistsError):
    """The run directory holds another run."""


def _environment(rt: runtime.Runtime) -> dict:
    import torchvision
    versions = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__}
    cuda = rt.device.type == "cuda"
    name = torch.cuda.get_device_name(rt.device) if cuda else f"cpu ({torch.get_num_threads()} threads)"
    return {"git_commit": git_commit(), "versions": versions, "device": name, "precision": rt.precision,
            "cpu": cpu_label(cpu_facts())}    # seeded CPU runs repeat only on the same CPU


def _summary(cfg: Config) -> dict:
    """The settings that tell runs apart in a results table."""
    m = cfg.model
    return {"dataset": cfg.data.name, "backbone": m.backbone, "streams": "+".join(m.streams),
            "fusion_layer": m.fusion_layer, "temporal": m.temporal, "ga_reg": m.ga_reg, "ga_detach_gp": m.ga_detach_gp,
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
    """(run dir, finished?) after taking the run's lock and applying run.resume / run.overwrite.
    A process that cannot take the lock raises RunLocked having changed nothing."""
    run_dir = Path(cfg.run.out_dir) / cfg.run_name
    locked = None
    if info.is_main:
        existed = record.has_run(run_dir)
        try:
            record.lock(run_dir)
        except record.RunLocked as err:
            locked = str(err)
        if locked is None and existed and not cfg.run.resume and not cfg.run.overwrite:
            record.release(run_dir)
            locked = ""
    locked = distributed.broadcast(locked, info)
    if locked:
        raise record.RunLocked(locked)
    if locked == "":
        raise RunExists(f"{run_dir}: a run of this name exists; pass run.resume=true to continue it, "
                        "run.overwrite=true to replace it, or another run.name")
    finished = (run_dir / "final.json").is_file()
    if info.is_main and cfg.run.resume and finished:
        try:
            record.check_finished(run_dir, cfg)
        except ValueError:
            record.release(run_dir)
            raise
    if info.is_main and not (cfg.run.resume and finished):
        if cfg.run.overwrite and not cfg.run.resume:
            record.clear(run_dir)
        (run_dir / "error.txt").unlink(missing_ok=True)   # this attempt replaces an earlier failure
    distributed.barrier(info)
    return run_dir, cfg.run.resume and finished


def train_one_epoch(model, loader, criterion, optimizer, scaler, cfg: Config, info: runtime.Runtime,
                    epoch: int, ckpt_dir: Path, board: Board) -> dict:
    """One pass over the training data; returns the epoch's mean loss parts and train accuracy.
    Loss parts and hit counts add up as device tensors, read once at the end of the epoch (and
    the loss and its parts every run.log_every steps, for the log and TensorBoard), so that a
    step does not wait for the GPU."""
    model.train()
    names: list[str] = []                  # "loss", "loss_ce", ..., then the streams' accuracy keys
    sums = None                            # [parts + streams] on the device: n-weighted losses, hits
    seen = 0
    progress = Progress(len(loader), f"epoch {epoch + 1}/{cfg.optim.epochs}", cfg.run.log_every, info.is_main)
    for step, (clips, labels, *boxes) in enumerate(loader):   # boxes: only for the oracle stream
        clips = to_device(clips, info.device)   # uint8 from the workers, transformed on the device
        labels = labels.to(info.device, non_blocking=True)
        with info.autocast():
            out = model(clips, *(b.to(info.device, non_blocking=True) for b in boxes))
        loss, parts = criterion(out, labels)   # in float32: the logits are upcast by the loss
        if not torch.isfinite(loss):
            values = ", ".join(f"{k}={v.item():.4g}" for k, v in parts.items())
            raise TrainingDiverged(f"non-finite loss at epoch {epoch + 1}, step {step + 1} ({values}); "
                                   + record.restart_hint(ckpt_dir))
        optimizer.zero_grad(set_to_none=True)
        runtime.backward_step(loss, optimizer, scaler, cfg.optim.clip_grad)
        n = labels.shape[0]
        seen += n
        with torch.no_grad():
            logits = {"fused": out.logits, **out.stream_logits}
            row = torch.cat([torch.stack([loss, *parts.values()]).double() * n,
                             torch.stack([z.argmax(1).eq(labels).sum() for z in logits.values()]).double()])
        if sums is None:
            names = ["loss", *(f"loss_{k}" for k in parts)] + \
                    [("train_top1" if s == "fused" else f"train_{s}_top1") for s in logits]
            sums = torch.zeros_like(row)
        sums += row
        shown = progress.update(n, loss=loss.detach())
        if shown is not None:
            board.step(epoch * len(loader) + step + 1,
                       {"loss": shown["loss"], **{f"loss_{k}": v.detach() for k, v in parts.items()},
                        "lr": optimizer.param_groups[0]["lr"], "clips_per_s": shown["clips/s"] * info.world_size})
    clips_per_s = progress.close() * info.world_size
    stats = torch.cat([torch.tensor([seen], dtype=torch.float64, device=info.device), sums])
    if info.enabled:                                   # sum over processes
        torch.distributed.all_reduce(stats)
    seen_all, *totals = stats.tolist()
    row = {k: v / seen_all * (100.0 if k.startswith("train_") else 1.0) for k, v in zip(names, totals)}
    row["clips_per_s"] = clips_per_s
    return row


def fit(cfg: Config) -> Path:
    """Train, validate and test one configuration; returns the run directory."""
    started = time.perf_counter()
    info = runtime.from_config(cfg)
    if cfg.optim.amp != info.amp:          # auto: the record holds the precision that runs here
        cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, amp=info.amp))
    # rank 0 alone looks at the run directory (it may be deleting it) and tells the others
    run_dir, finished = distributed.on_main(lambda: _prepare_run_dir(cfg, DistInfo()), info)
    if finished:
        if info.is_main:
            print(f"{run_dir}: finished earlier (final.json present); nothing to do")
            record.release(run_dir)
        return run_dir
    ckpt_dir = run_dir / "checkpoints"
    if info.is_main and not (cfg.run.resume and (ckpt_dir / "last.pt").is_file()):
        record.record_config(run_dir, cfg)          # nothing trained yet: this config is what runs
    info.seed_model()                      # the same initial weights on every rank
    root = dataset_root(cfg, info)
    data = build_datasets(cfg, ("train", "val"), root)
    classes = data["train"].classes
    data = check_lists(cfg, root, data)      # test list and classes too, before the first step
    model = build_model(cfg, len(classes), info.device)
    net = DistributedDataParallel(model, device_ids=[info.device] if info.device.type == "cuda" else None) \
        if info.enabled else model
    train_loader = build_loader(data["train"], cfg.data.batch_size, train=True, workers=cfg.data.workers,
                                distributed=info.enabled, seed=cfg.run.seed, persistent_workers=False)
    if len(train_loader) == 0:
        raise ValueError(f"data.batch_size={cfg.data.batch_size} exceeds the {len(train_loader.sampler)} training "
                         f"videos per process: no full batch to train on; lower data.batch_size")
    criterion = GLKALoss(ga_reg=cfg.model.ga_reg, margin=cfg.model.ga_margin, detach_gp=cfg.model.ga_detach_gp)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    scaler = info.grad_scaler()            # fp16 only; a run may resume under another optim.amp

    start_epoch, best_top1, rows = 0, -1.0, []
    if cfg.run.resume and (ckpt_dir / "last.pt").is_file():
        state = checkpoint.load(ckpt_dir / "last.pt", fix=f"copy {ckpt_dir / 'best.pt'} over it to resume from "
                                "the best epoch, or pass run.overwrite=true to start again")
        # changed settings: applied and noted, or refused on every rank (rank 0 reads and writes the record)
        distributed.on_main(lambda: record.record_config(run_dir, cfg, resumed_after=state["epoch"] + 1), info)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        record.apply_optim(optimizer, scheduler, cfg)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        start_epoch, best_top1, rows = state["epoch"] + 1, state["best_top1"], state["rows"]
        if info.is_main:
            write_csv(pd.DataFrame(rows), run_dir / "metrics.csv")   # the checkpoint's rows are the record
            print(f"resuming {run_dir} after epoch {start_epoch}")

    # rank 0's TensorBoard events; those after last.pt, from a killed process, are purged
    with Board(run_dir, cfg.run.tensorboard and info.is_main, start_epoch, len(train_loader)) as board:
        for epoch in range(start_epoch, cfg.optim.epochs):
            tic = time.perf_counter()
            # this rank's epoch: order, worker seeds, dropout
            train_loader.generator.manual_seed(info.seed_epoch(epoch))
            if info.enabled:
                train_loader.sampler.set_epoch(epoch)
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
            row |= train_one_epoch(net, train_loader, criterion, optimizer, scaler, cfg, info, epoch, ckpt_dir, board)
            skipped = data["train"].reset_skipped()
            if skipped and info.is_main:
                print(f"epoch {epoch + 1}: {skipped} bad videos skipped (data.on_bad_video=skip)")
            bad = record.non_finite(model.state_dict())
            if bad:                                     # neither validated nor saved
                raise TrainingDiverged(f"non-finite weights after epoch {epoch + 1} ({', '.join(bad[:3])}); "
                                       + record.restart_hint(ckpt_dir))
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
                board.attention(model, data.get("val"), info, epoch + 1)
                board.epoch(row)                    # flushed before the checkpoint that makes the epoch final
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "epoch": epoch, "best_top1": best_top1,
                         "rng": checkpoint.rng_state(), "config": cfg.to_dict(), "classes": classes, "rows": rows}
                if scaler is not None:
                    state["scaler"] = scaler.state_dict()
                bad = record.non_finite(state)
                if bad:
                    raise TrainingDiverged(f"non-finite optimizer state after epoch {epoch + 1} "
                                           f"({', '.join(bad[:3])}); " + record.restart_hint(ckpt_dir))
                if improved:
                    save_atomic(state, ckpt_dir / "best.pt")
                save_atomic(state, ckpt_dir / "last.pt")
                write_csv(pd.DataFrame(rows), run_dir / "metrics.csv")
                print(f"epoch {epoch + 1}: " + " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"),
                      flush=True)
            distributed.barrier(info)

    test = data["test"]
    best = checkpoint.load(ckpt_dir / "best.pt", fix="pass run.overwrite=true to train the run again") \
        if (ckpt_dir / "best.pt").is_file() else None
    if best is not None:
        model.load_state_dict(best["model"])
    labels, scores, order = predict(model, test, cfg, info, desc="test")
    skipped = sorted(set(range(len(test))) - set(order))
    metrics = summarize(scores, labels, len(classes), skipped=len(skipped))
    if info.is_main:
        write_csv(scores_frame(test, labels, scores, order), run_dir / "scores.csv.gz")
        final = {"run": cfg.run_name, "preset": cfg.preset, "test": metrics, "classes": classes,
                 "skipped_test_videos": [str(test.records[i].path) for i in skipped],
                 "best_val_top1": best_top1, "epochs": cfg.optim.epochs, "config": _summary(cfg),
                 "wall_time_s": time.perf_counter() - started, "world_size": info.world_size,
                 **_environment(info)}
        record.write_final(run_dir, final)
        print(f"{run_dir}: test top1 {metrics['top1']:.2f} top5 {metrics['top5']:.2f} "
              + " ".join(f"{s}={metrics[f'{s}_top1']:.2f}" for s in model.streams)
              + f" over {metrics['num_videos']} videos"
              + (f", {len(skipped)} unreadable skipped (data.on_bad_video=skip)" if skipped else ""))
        record.release(run_dir)
    return run_dir
