"""GPU readiness report: is this machine ready to train the paper's configuration?

    python -m attnet.bench gpu                       # on a GPU, a few minutes
    python -m attnet.bench gpu --device cpu --quick  # the same report at toy sizes (CI)

Seven parts, printed as one Markdown report and written to results/gpu_report_<device>.md:
1. fp32 and bf16 training of the paper's network (ResNet-34, T=12, 224 px, batch 30; no
   ImageNet weights here) over the same 20 steps from the same initial weights on the same
   generated batches: the two loss curves side by side and the step time of each;
2. model FLOPs utilisation: FLOPs of one train step (torch.utils.flop_counter) per bf16 step
   time, against the datasheet peak and the bf16 matmul peak measured in this run;
3. DataLoader clips/s at N workers on generated 320x240 H.264 videos (keyframe every 12
   frames), timed after a warm-up over 10 x workers batches, against what the step consumes;
4. the whole pipeline as training runs it: the real loader -> pinned uint8 copy -> device
   transforms (`to_device`) -> bf16 step: clips/s, the share of time the device waits for
   data, and MFU;
5. decoding on the CPU against the GPU (torchcodec NVDEC, nvJPEG), where a GPU is present;
6. one short `fit` on a tiny generated dataset, `evaluate` of its checkpoint, and a resume;
7. a 2-process torchrun run when two GPUs are visible (skipped, saying so, otherwise).

Every part runs through `runtime.start`, as training does (cudnn.benchmark on CUDA), and every
subprocess has a timeout.
"""
from __future__ import annotations

import argparse
import copy
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
from attnet.data import build_dataset, build_loader, to_device
from attnet.losses import GLKALoss
from attnet.models import TEMPORAL_MODELS
from attnet.results import run_final

from .data import loader_rate, smooth_frames
from .model import matmul_peak, timed

STEPS = 20
TIMEOUT_S = 900                                      # any subprocess of the report
# bf16 dense datasheet peaks (FLOP/s) by a part of the device's name; the first that matches wins
DATASHEET = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}
# (paper size, --quick size) of every knob the report sizes
SIZES = {
    "model": (["model.backbone=resnet34", "data.segments=12", "data.size=224", "data.batch_size=30"],
              ["model.backbone=tiny", "data.segments=4", "data.size=64", "data.batch_size=2",
               "model.hidden_size=32", "model.num_layers=2"]),
    "videos": ((16, 250), (4, 32)),                  # (videos, frames each), 320x240 at 25 fps
    "workers": ((0, 2, 4, 8), (0, 1)),
    "pipeline": ((50, 8), (3, 1)),                   # (steps, workers) of part 4
    "decode": (20, 2),                               # clips per decoding rate
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
        rt = runtime.start(str(device), amp, seed=cfg.run.seed)   # the trainer's setup, autocast and step
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


def datasheet_peak(device: torch.device) -> float | None:
    """The bf16 dense peak of a known GPU's datasheet, else None."""
    name = device_label(device)
    return next((peak for key, peak in DATASHEET.items() if device.type == "cuda" and key in name), None)


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
    """Clips/s of the training loader at each worker count: timed over 10 x workers batches (10
    without workers) after a warm-up of one batch per worker."""
    d = cfg.data
    ds = build_dataset("list", folder, subset="train", segments=d.segments, size=d.size, resize=d.resize,
                       val_fraction=0)                # every listed video: none held out for validation
    return {n: loader_rate(build_loader(ds, d.batch_size, train=True, workers=n, persistent_workers=False),
                           d.batch_size, warmup=max(1, n), batches=10 * max(1, n))
            for n in workers}


def pipeline(cfg, rt, folder: Path, steps: int, workers: int, num_classes: int) -> dict[str, float]:
    """What training does, step by step: the loader's next uint8 batch (pinned on CUDA), then
    `to_device` and an autocast train step, waited for. Returns seconds in all and waiting for
    the loader, after one warm-up step (allocation, cudnn autotuning, worker start-up)."""
    from attnet.engine.build import build_model, build_optimizer
    from attnet.engine import runtime
    d = cfg.data
    ds = build_dataset("list", folder, subset="train", segments=d.segments, size=d.size, resize=d.resize,
                       val_fraction=0)                # every listed video: none held out for validation
    loader = build_loader(ds, d.batch_size, train=True, workers=workers, persistent_workers=False)
    if len(loader) < steps + 1:
        raise ValueError(f"{folder}: {len(loader)} batches listed, {steps + 1} needed")
    torch.manual_seed(cfg.run.seed)
    model = build_model(cfg, num_classes, rt.device)
    optimizer = build_optimizer(cfg, model)
    criterion = GLKALoss(ga_reg=cfg.model.ga_reg, margin=cfg.model.ga_margin)
    batches = iter(loader)
    waited = total = 0.0
    for i in range(steps + 1):
        tic = time.perf_counter()
        clips, labels = next(batches)
        got = time.perf_counter()
        with rt.autocast():
            out = model(to_device(clips, rt.device))
        loss, _ = criterion(out, labels.to(rt.device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        runtime.backward_step(loss, optimizer)
        loss.item()                                  # the step is done: the device waits from here
        if i:
            waited += got - tic
            total += time.perf_counter() - tic
    return {"seconds": total, "waited": waited, "clips": steps * d.batch_size}


def write_jpegs(folder: Path, frames: torch.Tensor) -> list[Path]:
    import torchvision.io
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"img_{i + 1:05d}.jpg" for i in range(len(frames))]
    for path, frame in zip(paths, frames):
        torchvision.io.write_file(str(path), torchvision.io.encode_jpeg(frame, quality=90))
    return paths


def decode_rates(video: Path, jpegs: list[Path], device: torch.device, segments: int, clips: int) -> dict:
    """{(source, "cpu"|"cuda"): clips/s} of decoding `clips` T-segment clips: from the video with
    torchcodec, from the JPEG files with decode_jpeg (one call per clip, its frames as a list).
    CUDA (NVDEC, nvJPEG) only on a CUDA device; the CPU on one thread, as a loader worker."""
    import torchvision.io
    from torchcodec.decoders import VideoDecoder
    from attnet.data.sampling import train_indices
    encoded = [torchvision.io.read_file(str(p)) for p in jpegs]
    places = ["cpu"] + (["cuda"] if device.type == "cuda" else [])   # the cuda entries run only on a GPU

    def video_clip(place: str) -> None:
        decoder = VideoDecoder(str(video), device=place, dimension_order="NCHW", seek_mode="approximate")
        decoder.get_frames_at(sorted(set(train_indices(len(jpegs), segments).tolist())))

    def jpeg_clip(place: str) -> None:
        picked = [encoded[i] for i in train_indices(len(jpegs), segments).tolist()]
        torchvision.io.decode_jpeg(picked, mode=torchvision.io.ImageReadMode.RGB, device=place)

    rates = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for source, clip in (("H.264, keyframe every 12", video_clip), ("JPEG frames", jpeg_clip)):
            for place in places:
                clip(place)                          # warm-up: codec and CUDA context
                seconds = sum(timed(lambda: clip(place), device) for _ in range(clips))
                rates[source, place] = clips / seconds
    finally:
        torch.set_num_threads(threads)
    return rates


def fit_evaluate_resume(device: torch.device, tmp: Path) -> list[str]:
    """Report lines of fit (1 epoch), evaluate of its last.pt, and a resume to epoch 2 on the
    synthetic-smoke dataset (what an interrupted run does: final.json absent, run.resume)."""
    from attnet.engine import evaluate, fit
    base = [f"data.root={tmp / 'smoke'}", f"run.out_dir={tmp / 'runs'}", f"run.device={device}", "run.name=readiness"]
    tic = time.perf_counter()
    run = fit(load_config("synthetic-smoke", base + ["optim.epochs=1"]))
    fit_s = time.perf_counter() - tic
    final = run_final(run)
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
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return [f"- FAILED: no result after {TIMEOUT_S} s (timeout)"]
    seconds = time.perf_counter() - tic
    finals = list((tmp / "ddp").glob("*/final.json"))
    if done.returncode or not finals:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return [f"- FAILED (exit {done.returncode}) after {seconds:.1f} s: {tail[0]}"]
    final = run_final(finals[0].parent)
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

    def mfu(achieved: float) -> str:
        """MFU against the measured bf16 peak and the datasheet's."""
        sheet = datasheet_peak(device)
        return (f"MFU {100 * achieved / found['peak']:.3g} % of the measured peak, "
                + (f"{100 * achieved / sheet:.3g} % of the datasheet's" if sheet
                   else "no datasheet peak for this device"))

    def utilisation() -> list[str]:
        name, step = step_time()
        flops = found["flops"]
        found["peak"], n = matmul_peak(device, torch.bfloat16)
        sheet = datasheet_peak(device)
        peak = found["peak"]
        out = [f"- one train step (forward + backward, batch {d.batch_size}): {flops / 1e9:.1f} GFLOP "
               "(FlopCounterMode: matmuls and convolutions)",
               f"- measured bf16 peak ({n}^2 matmul): {peak / 1e12:.3g} TFLOP/s; datasheet (bf16 dense): "
               + (f"{sheet / 1e12:.0f} TFLOP/s" if sheet else "unknown for this device"),
               f"- achieved: {name} {flops / step / 1e12:.3g} TFLOP/s, {mfu(flops / step)}"]
        if "bf16" in found and "fp32" in found:
            out[-1] += (f"; fp32 {flops / found['fp32'] / 1e12:.3g} TFLOP/s "
                        f"({100 * flops / found['fp32'] / peak:.3g} % of the bf16 peak)")
        return out

    count, frames = SIZES["videos"][quick]

    steps, pipe_workers = SIZES["pipeline"][quick]
    listed = max(11 * max(max(SIZES["workers"][quick]), 1), steps + 1)      # part 3's warm-up and timed batches
    videos = write_videos(tmp / "videos", count, frames, -(-listed * d.batch_size // count))

    def loading() -> list[str]:
        rates = loader_rates(cfg, videos, SIZES["workers"][quick])
        name, step = step_time()
        consumed = d.batch_size / step
        best = max(rates, key=rates.get)
        return [f"| workers | clips/s | vs {name} step |", "|---|---|---|",
                *[f"| {n} | {r:.1f} | {r / consumed:.2f}x |" for n, r in rates.items()], "",
                f"- the {name} train step consumes {consumed:.1f} clips/s; the loader is "
                f"{'ahead' if rates[best] >= consumed else 'BEHIND'} at its best ({best} workers)"]

    def whole() -> list[str]:
        from attnet.engine import runtime
        rt = runtime.start(str(device), "bf16", seed=cfg.run.seed)
        got = pipeline(cfg, rt, videos, steps, pipe_workers, classes)
        step = got["seconds"] / steps
        out = [f"- {steps} steps at batch {d.batch_size}, {pipe_workers} workers, bf16 autocast: "
               f"{got['clips'] / got['seconds']:.1f} clips/s, {1e3 * step:.1f} ms a step",
               f"- the device waits for data {100 * got['waited'] / got['seconds']:.1f} % of the time"]
        if "flops" in found and "peak" in found:
            out.append(f"- {found['flops'] / step / 1e12:.3g} TFLOP/s, {mfu(found['flops'] / step)}")
        return out

    def decoding() -> list[str]:
        clip = smooth_frames(frames)
        rates = decode_rates(videos / "v0.mp4", write_jpegs(tmp / "jpegs", clip), device, d.segments,
                             SIZES["decode"][quick])
        out = ["| source | where | clips/s |", "|---|---|---|",
               *[f"| {source} | {place} | {r:.1f} |" for (source, place), r in rates.items()], ""]
        if device.type != "cuda":
            out.append("- GPU decoding (torchcodec NVDEC, nvJPEG): skipped, no CUDA device")
        return out

    sections = [
        (f"1. fp32 vs bf16: {STEPS} steps, same initial weights, same batches", precisions),
        ("2. Model FLOPs utilisation", utilisation),
        (f"3. Data loader vs train step ({count} generated 320x240 H.264 videos of {frames} frames, "
         f"T={d.segments}, {d.size} px)", loading),
        ("4. The pipeline: loader -> pinned uint8 copy -> device transforms -> bf16 step", whole),
        (f"5. Decoding on the CPU (one thread) and the GPU (T={d.segments} sampled frames of 320x240)", decoding),
        ("6. fit + evaluate + resume (synthetic-smoke)", lambda: fit_evaluate_resume(device, tmp)),
        ("7. Two processes (torchrun)", lambda: two_process_run(tmp)),
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
