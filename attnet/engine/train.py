"""fit(cfg): train with the GLKA loss, validate each epoch, test the best checkpoint, and
record the run under results/runs/<name>/."""
from __future__ import annotations

import dataclasses
import platform
import secrets
import time
from pathlib import Path

import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel

from attnet.config import Config, LaunchConfig
from attnet.data import build_loader, to_device
from attnet.data.datasets import validation
from attnet.files import git_commit, save_atomic, write_csv, write_text
from attnet.losses import GLKALoss
from attnet.machine import cpu_facts, cpu_label, gpu_facts, media_versions

from . import checkpoint, distributed, record, runtime
from .board import Board
from .build import build_datasets, build_model, build_optimizer, build_scheduler, check_lists, dataset_root
from .distributed import DistInfo
from .evaluate import predict, scores_frame
from .metrics import summarize, topk_accuracy
from .progress import Progress


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite (every rank raises it together)."""


class RunExists(FileExistsError):
    """The run directory holds another run."""


def _environment(rt: runtime.Runtime) -> dict:
    import torchvision
    versions = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
                **media_versions()}
    cuda = rt.device.type == "cuda"
    name = torch.cuda.get_device_name(rt.device) if cuda else f"cpu ({torch.get_num_threads()} threads)"
    return {"git_commit": git_commit(), "versions": versions, "device": name, "precision": rt.precision,
            "cpu": cpu_label(cpu_facts()),    # seeded CPU runs repeat only on the same CPU
            **({"gpu": gpu_facts()} if cuda else {})}


def device_batch(cfg: Config, world_size: int) -> int:
    """Each process's share of the global data.batch_size: the recipe's batch at any GPU count."""
    b = cfg.data.batch_size
    if b % world_size:
        raise ValueError(f"data.batch_size={b} is the global batch and does not divide over {world_size} processes; "
                         f"pass a multiple of {world_size} (e.g. data.batch_size={max(world_size, b - b % world_size)}) "
                         "or start another number of processes")
    return b // world_size


def _summary(cfg: Config) -> dict:
    """The settings that tell runs apart in a results table."""
    m = cfg.model
    return {"dataset": cfg.data.name, "backbone": m.backbone, "streams": "+".join(m.streams),
            "fusion_layer": m.fusion_layer, "temporal": m.temporal, "ga_reg": m.ga_reg, "ga_detach_gp": m.ga_detach_gp,
            "segments": cfg.data.segments, "num_clips": cfg.data.num_clips, "seed": cfg.run.seed,
            "selection": _selection(cfg)}


def _selection(cfg: Config) -> str:
    """How the tested checkpoint was chosen: "val", "test" (the authors' protocol where no validation
    list ships: the reported number was selected on the test set) or "last epoch" (no val set)."""
    d = cfg.data
    source = validation(d.name, Path(d.root), d.val_fraction, d.select_on_test, d.val_list)
    return {"test": "test", "none": "last epoch"}.get(source, "val")


def _prepare_run_dir(cfg: Config, info: DistInfo) -> tuple[Path, bool]:
    """(run dir, finished?) after taking the run's lock and applying run.resume / run.overwrite.
    A process that cannot take the lock raises RunLocked having changed nothing."""
    run_dir = Path(cfg.run.out_dir) / cfg.run_name
    locked = None
    if info.is_main:
        existed = record.has_progress(run_dir)
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


def _check_shared(run_dir: Path, info: DistInfo) -> None:
    """Every rank reads rank 0's checkpoints from the run folder: one that cannot see a file rank
    0 just wrote there stops the group with one line."""
    if not info.enabled:
        return
    token, path = secrets.token_hex(8), run_dir / ".shared"
    token = distributed.on_main(lambda: write_text(path, token) or token, info)
    for _ in range(20):                     # a network file system may show a new file late
        try:
            seen = path.read_text() == token
        except OSError:
            seen = False
        if seen:
            break
        time.sleep(0.5)
    blind = [rank for rank, ok in enumerate(distributed.gather(seen, info)) if not ok]
    if info.is_main:
        path.unlink()
    if blind:
        raise distributed.raised_everywhere(RuntimeError(
            f"{run_dir}: rank(s) {', '.join(map(str, blind))} cannot see the run folder rank 0 writes; put "
            "run.out_dir on a file system every node shares"))


def train_one_epoch(model, loader, criterion, optimizer, scaler, cfg: Config, info: runtime.Runtime,
                    epoch: int, ckpt_dir: Path, board: Board) -> dict:
    """One pass over the training data; returns the epoch's mean loss parts and train accuracy.
    Loss parts and hit counts add up as device tensors, read once at the end of the epoch (and
    the loss and its parts every run.log_every steps, for the log and TensorBoard), so that a
    step does not wait for the GPU. The first non-finite loss is kept on the device too, and
    read (all ranks agreeing) every run.log_every steps and at the end of the epoch."""
    model.train()
    names: list[str] = []                  # "loss", "loss_ce", ..., then the streams' accuracy keys
    sums = None                            # [parts + streams] on the device: n-weighted losses, hits
    seen = 0
    first_bad = torch.tensor(-1, device=info.device)      # the step of the first non-finite loss
    bad_parts = None
    progress = Progress(len(loader), f"epoch {epoch + 1}/{cfg.optim.epochs}", cfg.run.log_every, info.is_main)
    for step, (clips, labels, *boxes) in enumerate(loader):   # boxes: only for the oracle stream
        clips = to_device(clips, info.device)   # uint8 from the workers, transformed on the device
        labels = labels.to(info.device, non_blocking=True)
        with info.autocast():
            out = model(clips, *(b.to(info.device, non_blocking=True) for b in boxes))
        loss, parts = criterion(out, labels)   # in float32: the logits are upcast by the loss
        with torch.no_grad():
            new = ~torch.isfinite(loss) & (first_bad < 0)
            first_bad = torch.where(new, step, first_bad)
            part_values = torch.stack(list(parts.values())).float()
            bad_parts = torch.where(new, part_values, part_values if bad_parts is None else bad_parts)
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
        if ((step + 1) % cfg.run.log_every == 0 or step + 1 == len(loader)) and distributed.any_rank(first_bad >= 0, info):
            _diverged(first_bad, bad_parts, list(parts), info, epoch, ckpt_dir)
    clips_per_s = progress.close() * info.world_size
    stats = torch.cat([torch.tensor([seen], dtype=torch.float64, device=info.device), sums])
    if info.enabled:                                   # sum over processes
        torch.distributed.all_reduce(stats)
    seen_all, *totals = stats.tolist()
    row = {k: v / seen_all * (100.0 if k.startswith("train_") else 1.0) for k, v in zip(names, totals)}
    row["clips_per_s"] = clips_per_s
    return row


def _diverged(first_bad: torch.Tensor, bad_parts: torch.Tensor, names: list[str], info: runtime.Runtime,
              epoch: int, ckpt_dir: Path) -> None:
    """Raise TrainingDiverged on every rank, naming the earliest non-finite step of any rank."""
    found = [(step, rank, values) for rank, (step, values) in
             enumerate(distributed.gather((int(first_bad), bad_parts.tolist()), info)) if step >= 0]
    step, rank, values = min(found)
    where = f" on rank {rank}" if info.enabled else ""
    said = ", ".join(f"{k}={v:.4g}" for k, v in zip(names, values))
    raise distributed.raised_everywhere(TrainingDiverged(
        f"non-finite loss at epoch {epoch + 1}, step {step + 1}{where} ({said}); " + record.restart_hint(ckpt_dir)))


def fit(cfg: Config) -> Path:
    """Train, validate and test one configuration; returns the run directory."""
    started = time.perf_counter()
    info = runtime.from_config(cfg)
    # the record holds the world size: a resume or a finished run is compared with it
    cfg = dataclasses.replace(cfg, launch=LaunchConfig(info.world_size, device_batch(cfg, info.world_size)))
    # rank 0 alone looks at the run directory (it may be deleting it) and tells the others
    run_dir, finished = distributed.on_main(lambda: _prepare_run_dir(cfg, DistInfo()), info)
    if finished:
        if info.is_main:
            print(f"{run_dir}: finished earlier (final.json present); nothing to do")
            record.release(run_dir)
        return run_dir
    if cfg.optim.amp != info.amp:          # auto: the record holds the precision that runs here
        cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, amp=info.amp))
    _check_shared(run_dir, info)
    with distributed.fail_together(info, lambda text: write_text(run_dir / "error.txt", text)):
        _train_and_test(cfg, info, run_dir, started)
    return run_dir


def _train_and_test(cfg: Config, info: runtime.Runtime, run_dir: Path, started: float) -> None:
    """fit's work once the run directory is decided: its decisions are rank 0's, shared."""
    ckpt_dir = run_dir / "checkpoints"
    resume = distributed.on_main(lambda: cfg.run.resume and (ckpt_dir / "last.pt").is_file(), info)
    if info.is_main and not resume:
        record.record_config(run_dir, cfg)          # nothing trained yet: this config is what runs
    info.seed_model()                      # the same initial weights on every rank
    root = dataset_root(cfg, info)
    data = build_datasets(cfg, ("train", "val"), root)
    classes = data["train"].classes
    data = check_lists(cfg, root, data)      # test list and classes too, before the first step
    # rank 0 first: it alone downloads the ImageNet or model.init_checkpoint weights
    model = distributed.main_first(lambda: build_model(cfg, len(classes), info.device), info)
    net = DistributedDataParallel(model, device_ids=[info.device] if info.device.type == "cuda" else None) \
        if info.enabled else model
    batch = cfg.launch.device_batch_size
    train_loader = build_loader(data["train"], batch, train=True, workers=cfg.data.workers,
                                distributed=info.enabled, seed=cfg.run.seed, persistent_workers=False)
    if len(train_loader) == 0:
        raise distributed.raised_everywhere(ValueError(
            f"data.batch_size={cfg.data.batch_size} ({batch} per process) exceeds the {len(train_loader.sampler)} "
            "training videos per process: no full batch to train on; lower data.batch_size"))
    criterion = GLKALoss(ga_reg=cfg.model.ga_reg, margin=cfg.model.ga_margin, detach_gp=cfg.model.ga_detach_gp)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    scaler = info.grad_scaler()            # fp16 only; a run may resume under another optim.amp

    start_epoch, best_top1, rows = 0, -1.0, []
    if resume:
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
            distributed.broadcast_buffers(model, info)   # validated and saved: rank 0's BatchNorm statistics
            bad = record.non_finite(model.state_dict())
            if bad:                                     # neither validated nor saved
                raise distributed.raised_everywhere(TrainingDiverged(
                    f"non-finite weights after epoch {epoch + 1} ({', '.join(bad[:3])}); " + record.restart_hint(ckpt_dir)))
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
    if distributed.on_main(lambda: (ckpt_dir / "best.pt").is_file(), info):
        model.load_state_dict(checkpoint.load(ckpt_dir / "best.pt", fix="pass run.overwrite=true to train the run "
                                              "again")["model"])
    distributed.broadcast_buffers(model, info)
    labels, scores, order = predict(model, test, cfg, info, desc="test")
    skipped = sorted(set(range(len(test))) - set(order))
    metrics = summarize(scores, labels, len(classes), skipped=len(skipped))
    if info.is_main:
        write_csv(scores_frame(test, labels, scores, order), run_dir / "scores.csv.gz")
        final = {"run": cfg.run_name, "preset": cfg.preset, "test": metrics, "classes": classes,
                 "skipped_test_videos": [str(test.records[i].path) for i in skipped],
                 "best_val_top1": best_top1, "epochs": cfg.optim.epochs, "config": _summary(cfg),
                 "wall_time_s": time.perf_counter() - started, "world_size": info.world_size,
                 "device_batch_size": cfg.launch.device_batch_size, **_environment(info)}
        record.write_final(run_dir, final)
        print(f"{run_dir}: test top1 {metrics['top1']:.2f} top5 {metrics['top5']:.2f} "
              + " ".join(f"{s}={metrics[f'{s}_top1']:.2f}" for s in model.streams)
              + f" over {metrics['num_videos']} videos"
              + (f", {len(skipped)} unreadable skipped (data.on_bad_video=skip)" if skipped else ""))
        record.release(run_dir)
