"""GPU readiness report: is this machine ready to train the paper's configuration?

    python -m attnet.bench gpu                       # on a GPU, a few minutes
    python -m attnet.bench gpu --device cpu --quick  # the same report at toy sizes (CI)

Five parts, printed as one Markdown report and written to results/gpu_report_<device>.md:
1. fp32 and bf16 training of the paper's network (ResNet-34, T=12, 224 px; no ImageNet
   weights here) over the same 20 steps from the same initial weights on the same generated
   batches: the two loss curves side by side and the step time of each;
2. model FLOPs utilisation: FLOPs of one train step (torch.utils.flop_counter) per bf16 step
   time, against the bf16 matmul peak measured in this run;
3. DataLoader clips/s at N workers on generated 320x240 H.264 videos (keyframe every 12
   frames), against what the bf16 train step consumes;
4. one short `fit` on a tiny generated dataset, `evaluate` of its checkpoint, and a resume;
5. a 2-process torchrun run when two GPUs are visible (skipped, saying so, otherwise).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from attnet.config import load_config
from attnet.data import build_dataset, build_loader
from attnet.losses import GLKALoss
from attnet.models import TEMPORAL_MODELS

from .data import loader_rate, smooth_frames
from .model import timed

STEPS = 20
LOADER_BATCHES = 12                                  # batches per DataLoader measurement
# (paper size, --quick size) of every knob the report sizes
SIZES = {
    "model": (["model.backbone=resnet34", "data.segments=12", "data.size=224", "data.batch_size=16"],
              ["model.backbone=tiny", "data.segments=4", "data.size=64", "data.batch_size=2",
               "model.hidden_size=32", "model.num_layers=2"]),
    "matmul": (8192, 512),
    "videos": ((16, 250), (4, 32)),                  # (videos, frames each), 320x240 at 25 fps
    "workers": ((0, 2, 4, 8), (0, 1)),
}


def device_label(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def one_line(err: Exception) -> str:
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"


def precision_curves(cfg, device: torch.device, batches, num_classes: int) -> tuple[dict, int]:
    """{"fp32"|"bf16": (losses, step times), or the error that stopped it} of STEPS SGD steps
    from the same initial weights on the same batches (dropout drawn alike), and the FLOPs of
    one train step."""
    from attnet.engine import runtime
    from attnet.engine.build import build_model, build_optimizer
    criterion = GLKALoss(ga_reg=cfg.model.ga_reg, margin=cfg.model.ga_margin)
    torch.manual_seed(cfg.run.seed)
    initial = build_model(cfg, num_classes, device)
    results = {}
    for name, amp in (("fp32", "off"), ("bf16", "bf16")):
        rt = runtime.Runtime(device=device, amp=amp, seed=cfg.run.seed)   # the trainer's autocast and step
        model = copy.deepcopy(initial)
        optimizer = build_optimizer(cfg, model)
        losses, times = [], []
        torch.manual_seed(cfg.run.seed)

        def step(x, y):
            with rt.autocast():
                out = model(x)
            loss, _ = criterion(out, y)              # in float32, as the trainer computes it
            optimizer.zero_grad(set_to_none=True)
            runtime.backward_step(loss, optimizer)
            losses.append(loss.item())
        try:
            for i in range(STEPS):
                x, y = batches[i % len(batches)]
                times.append(timed(lambda: step(x, y), device))
        except Exception as err:                     # e.g. a layer without a bf16 kernel: fp32 still counts
            results[name] = one_line(err)
            continue
        results[name] = (losses, times[1:])          # the first step pays for allocation and autotuning
    x, y = batches[0]
    with FlopCounterMode(display=False) as counter:
        loss, _ = criterion(initial(x), y)
        loss.backward()
    return results, counter.get_total_flops()


def matmul_peak(device: torch.device, n: int, repeats: int = 10) -> float:
    """FLOP/s of an n x n bf16 matmul, the best of `repeats`."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    timed(lambda: a @ b, device)
    return 2 * n ** 3 / min(timed(lambda: a @ b, device) for _ in range(repeats))


def write_videos(folder: Path, count: int, frames: int, repeats: int) -> Path:
    """`count` 320x240, 25 fps H.264 videos with a keyframe every 12 frames (as FFmpeg writes
    UCF101 / HMDB51's MPEG-4), and a `train.txt` listing each `repeats` times."""
    from torchcodec.encoders import VideoEncoder
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        VideoEncoder(smooth_frames(frames), frame_rate=25).to_file(str(folder / f"v{i}.mp4"), codec="libx264", crf=23,
                                                                    extra_options={"g": "12"})
        lines += [f"v{i}.mp4 {i % 2}"] * repeats
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    return folder


def loader_rates(cfg, folder: Path, workers: tuple[int, ...]) -> dict[int, float]:
    d = cfg.data
    ds = build_dataset("list", folder, subset="train", segments=d.segments, size=d.size, resize=d.resize)
    return {n: loader_rate(build_loader(ds, d.batch_size, train=True, workers=n, persistent_workers=False),
                           d.batch_size) for n in workers}


def fit_evaluate_resume(device: torch.device, tmp: Path) -> list[str]:
    """Report lines of fit (1 epoch), evaluate of its last.pt, and a resume to epoch 2 on the
    synthetic-smoke dataset (what an interrupted run does: final.json absent, run.resume)."""
    from attnet.engine import evaluate, fit
    base = [f"data.root={tmp / 'smoke'}", f"run.out_dir={tmp / 'runs'}", f"run.device={device}", "run.name=readiness"]
    tic = time.perf_counter()
    run = fit(load_config("synthetic-smoke", base + ["optim.epochs=1"]))
    fit_s = time.perf_counter() - tic
    final = json.loads((run / "final.json").read_text())
    tic = time.perf_counter()
    metrics = evaluate(load_config("synthetic-smoke", base), run / "checkpoints" / "last.pt")
    eval_s = time.perf_counter() - tic
    (run / "final.json").unlink()
    tic = time.perf_counter()
    fit(load_config("synthetic-smoke", base + ["optim.epochs=2", "run.resume=true"]))
    resume_s = time.perf_counter() - tic
    epochs = [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    same = "yes" if abs(metrics["top1"] - final["test"]["top1"]) < 1e-6 else "NO"
    return [f"- fit, 1 epoch: {fit_s:.1f} s, test top-1 {final['test']['top1']:.1f} %",
            f"- evaluate last.pt: {eval_s:.1f} s, test top-1 {metrics['top1']:.1f} % (equals fit's: {same})",
            f"- resume to 2 epochs: {resume_s:.1f} s, metrics.csv epochs {epochs} "
            f"({'ok' if epochs == [1, 2] else 'WRONG'})"]


def two_process_run(tmp: Path) -> list[str]:
    """A 2-process torchrun training of synthetic-smoke when two GPUs are visible."""
    gpus = torch.cuda.device_count()
    if gpus < 2:
        return [f"- skipped: {gpus} GPU(s) visible, two are needed"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "attnet", "train", "--preset", "synthetic-smoke", f"data.root={tmp / 'smoke'}",
               f"run.out_dir={tmp / 'ddp'}", "run.device=cuda", "optim.epochs=1"]
    tic = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    finals = list((tmp / "ddp").glob("*/final.json"))
    if done.returncode or not finals:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return [f"- FAILED (exit {done.returncode}) after {seconds:.1f} s: {tail[0]}"]
    final = json.loads(finals[0].read_text())
    return [f"- torchrun, 2 processes, 1 epoch: {seconds:.1f} s, world size {final['world_size']}, "
            f"test top-1 {final['test']['top1']:.1f} %"]


def report(args: argparse.Namespace, tmp: Path) -> tuple[str, int]:
    """(the report in Markdown, how many of its parts failed)."""
    device = torch.device(args.device)
    quick = int(args.quick)
    overrides = SIZES["model"][quick] + ["model.pretrained=null", "data.workers=0", f"run.device={device}"]
    overrides += [f"model.temporal={args.temporal}"] if args.temporal else []
    cfg = load_config("_paper", overrides)
    d, m = cfg.data, cfg.model
    classes = 51                                     # HMDB51's
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(d.batch_size, d.segments, 3, d.size, d.size, generator=g).to(device),
                torch.randint(0, classes, (d.batch_size,), generator=g).to(device)) for _ in range(4)]
    lines = [f"# GPU readiness report: {device_label(device)}", "",
             f"torch {torch.__version__}, {'--quick (toy sizes)' if quick else 'paper sizes'}; model {m.backbone}, "
             f"T={d.segments}, {d.size} px, batch {d.batch_size}, temporal {m.temporal}, hidden {m.hidden_size}, "
             f"pretrained None, {classes} classes; generated clips (4 batches, cycled)", ""]

    found: dict[str, float] = {}                    # figures later sections compare against
    problems: list[str] = []                        # failures a section reports and survives

    def precisions() -> list[str]:
        curves, found["flops"] = precision_curves(cfg, device, batches, classes)
        ran = {k: v for k, v in curves.items() if not isinstance(v, str)}
        for name, (_, times) in ran.items():
            found[name] = statistics.median(times)
        rows = []
        for i in range(STEPS):
            cells = [f"{ran[k][0][i]:.4f}" if k in ran else "-" for k in ("fp32", "bf16")]
            diff = f"{ran['bf16'][0][i] - ran['fp32'][0][i]:+.4f}" if len(ran) == 2 else "-"
            rows.append(f"| {i + 1} | {cells[0]} | {cells[1]} | {diff} |")
        out = ["| step | fp32 loss | bf16 loss | difference |", "|---|---|---|---|", *rows, ""]
        for name, result in curves.items():
            if name in ran:
                out.append(f"- {name}: median step time {found[name] * 1e3:.1f} ms, loss {result[0][0]:.4f} -> "
                           f"{result[0][-1]:.4f} over the {STEPS} steps")
            else:
                out.append(f"- {name}: FAILED: {result}")
                problems.append(name)
        if len(ran) == 2:
            out.append(f"- bf16 is {found['fp32'] / found['bf16']:.2f}x faster than fp32")
        return out

    def step_time() -> tuple[str, float]:
        """The bf16 step time, else fp32's (named), for the parts that compare against a step."""
        name = "bf16" if "bf16" in found else "fp32"
        if name not in found:
            raise RuntimeError("needs a step time from part 1")
        return name, found[name]

    def utilisation() -> list[str]:
        name, step = step_time()
        flops = found["flops"]
        peak = matmul_peak(device, SIZES["matmul"][quick])
        out = [f"- one train step (forward + backward, batch {d.batch_size}): {flops / 1e9:.1f} GFLOP "
               "(FlopCounterMode: matmuls and convolutions)",
               f"- measured bf16 peak ({SIZES['matmul'][quick]}^2 matmul): {peak / 1e12:.3g} TFLOP/s",
               f"- achieved: {name} {flops / step / 1e12:.3g} TFLOP/s, MFU {100 * flops / step / peak:.3g} %"]
        if "bf16" in found and "fp32" in found:
            out[-1] += (f"; fp32 {flops / found['fp32'] / 1e12:.3g} TFLOP/s "
                        f"({100 * flops / found['fp32'] / peak:.3g} % of the bf16 peak)")
        return out

    count, frames = SIZES["videos"][quick]

    def loading() -> list[str]:
        repeats = -(-LOADER_BATCHES * d.batch_size // count)           # enough for LOADER_BATCHES batches
        rates = loader_rates(cfg, write_videos(tmp / "videos", count, frames, repeats), SIZES["workers"][quick])
        name, step = step_time()
        consumed = d.batch_size / step
        best = max(rates, key=rates.get)
        return [f"| workers | clips/s | vs {name} step |", "|---|---|---|",
                *[f"| {n} | {r:.1f} | {r / consumed:.2f}x |" for n, r in rates.items()], "",
                f"- the {name} train step consumes {consumed:.1f} clips/s; the loader is "
                f"{'ahead' if rates[best] >= consumed else 'BEHIND'} at its best ({best} workers)"]

    sections = [
        (f"1. fp32 vs bf16: {STEPS} steps, same initial weights, same batches", precisions),
        ("2. Model FLOPs utilisation", utilisation),
        (f"3. Data loader vs train step ({count} generated 320x240 H.264 videos of {frames} frames, "
         f"T={d.segments}, {d.size} px)", loading),
        ("4. fit + evaluate + resume (synthetic-smoke)", lambda: fit_evaluate_resume(device, tmp)),
        ("5. Two processes (torchrun)", lambda: two_process_run(tmp)),
    ]
    failed = 0
    for title, make in sections:                  # a failing part is reported and the others still run
        lines += [f"## {title}", ""]
        try:
            lines += make()
        except Exception as err:
            failed += 1
            lines += [f"- FAILED: {one_line(err)}"]
        lines += [""]
    return "\n".join(lines), failed + len(problems)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m attnet.bench gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="toy sizes (about a minute on a CPU)")
    p.add_argument("--temporal", choices=list(TEMPORAL_MODELS), default=None,
                   help="temporal model (default: the paper's, sru)")
    p.add_argument("--out", default=None, help="report path (default: results/gpu_report_<device>.md)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as tmp:
        text, failed = report(args, Path(tmp))
    out = Path(args.out or f"results/gpu_report_{slug(device_label(torch.device(args.device)))}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".tmp")
    partial.write_text(text + "\n")
    os.replace(partial, out)
    print(text)
    print(f"\nwritten to {out}")
    if failed:
        raise SystemExit(f"{failed} part(s) of the report FAILED; see {out}")
