"""Loader throughput per CPU core, and what it means for a GPU node.

    python -m attnet.bench data [--mfu 0.4] [--cores-per-gpu 16] [--parts sources gop keep-up]

Part "sources" writes 10 s, 25 fps, 320x240 sources of each kind a dataset ships (H.264 with a
keyframe every 250 frames as Kinetics downloads, every 12 as `attnet data reencode` writes,
MPEG-4 part 2 AVI as UCF101 / HMDB51, the authors' JPEG frame folders, and the decoded cache)
and times, in this one process on one thread, training batches at the paper's shape (12
segments, resize 256, crop 224) made as the workers made them before (decode + resize, crop,
flip, scale and normalise: float out) and as they make them now (decode + crop draws: uint8
out, transformed on the device by `to_device`). From the uint8 rate and the step time of the
paper's recipe at a given MFU (7.83 TFLOP a step at batch 30, against an H100's 989 TFLOP/s
bf16 dense peak) it prints the cores per GPU that keep the GPU fed and the workers it would use.

Part "gop" encodes a 10 s, 25 fps, 320x240 video (H.264, at several keyframe intervals, then the
longest-GOP one re-encoded by `attnet data reencode`) and times one sampled clip per call,
opening the file each time as the dataset does. Part 2 builds
the `synthetic` preset's dataset, model, loss and optimiser and prints the clips/s of one
loader worker beside the clips/s of training steps.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from attnet.config import load_config
from attnet.data import build_dataset, build_loader, synthetic, to_device
from attnet.data.decoding import decode_video
from attnet.data.reencode import reencode_video
from attnet.data.sampling import train_indices
from attnet.data.transforms import collate
from attnet.losses import GLKALoss

STEP_FLOP = 7.83e12        # one train step of the paper's recipe (ResNet-34, T=12, 224 px), batch 30
STEP_BATCH = 30
H100_BF16_PEAK = 989e12    # FLOP/s, dense, datasheet


def _rate(fn, repeats: int) -> float:
    """Calls per second, after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return repeats / (time.perf_counter() - start)


def smooth_frames(count: int, height: int = 240, width: int = 320) -> torch.Tensor:
    """uint8 [count, 3, H, W] of blurred noise: content a codec treats like camera footage."""
    frames = torch.randint(0, 256, (count, 3, height, width), dtype=torch.uint8)
    return torch.nn.functional.avg_pool2d(frames.float(), 9, 1, 4).to(torch.uint8)


def loader_rate(loader, batch_size: int, warmup: int = 1, batches: int | None = None) -> float:
    """Clips/s of a DataLoader, timed over `batches` batches (default: the rest of the pass)
    after its first `warmup` (worker start-up and the batches the workers prepared meanwhile)."""
    timed = 0
    for i, _ in enumerate(loader):
        if i == warmup - 1:
            start = time.perf_counter()
        elif i >= warmup:
            timed += 1
            if timed == batches:
                break
    return timed * batch_size / (time.perf_counter() - start)


def write_sources(folder: Path, videos: int, frames: int = 250) -> dict[str, tuple[Path, dict]]:
    """{source: (list file, build_dataset options)}: `videos` generated 320x240, 25 fps sources of
    `frames` frames in each format the kit reads."""
    from torchcodec.encoders import VideoEncoder
    import torchvision.io
    kinds = {"H.264, keyframe every 250 (Kinetics as downloaded)": ("g250", "mp4"),
             "H.264, keyframe every 12 (reencoded)": ("g12", "mp4"),
             "MPEG-4 part 2 AVI (UCF101 / HMDB51)": ("avi", "avi"),
             "JPEG frame folder (the authors' layout)": ("jpeg", None)}
    sources = {}
    for name, (tag, ext) in kinds.items():
        lines = []
        for v in range(videos):
            clip = smooth_frames(frames)
            path = folder / tag / (f"v{v}.{ext}" if ext else f"v{v}")
            path.parent.mkdir(parents=True, exist_ok=True)
            if ext is None:                          # img_00001.jpg, ... as the frame folders are listed
                path.mkdir()
                for i, frame in enumerate(clip):
                    torchvision.io.write_file(str(path / f"img_{i + 1:05d}.jpg"),
                                              torchvision.io.encode_jpeg(frame, quality=90))
                lines.append(f"{path.relative_to(folder)} {frames} 0")
                continue
            options = {"codec": "mpeg4", "pixel_format": "yuv420p"} if ext == "avi" else \
                {"codec": "libx264", "crf": 23, "extra_options": {"g": tag[1:]}}
            VideoEncoder(clip, frame_rate=25).to_file(str(path), **options)
            lines.append(f"{path.relative_to(folder)} 0")
        (folder / f"{tag}.txt").write_text("\n".join(lines) + "\n")
        sources[name] = (folder / f"{tag}.txt", {})
    sources["decoded cache (data.cache=true) of the keyframe-12 H.264"] = (folder / "g12.txt", {"cache": True})
    return sources


def batch_rates(ds, batch: int, rounds: int) -> tuple[float, float]:
    """Clips/s of the worker's batch before (float items, default collate) and now (uint8 items,
    `collate`), in alternating rounds over the dataset; each the best of its rounds (the least
    disturbed by other processes), after a warm-up batch of each."""
    from torch.utils.data import default_collate
    ids = [i % len(ds) for i in range(batch)]
    ways = {"float": lambda: default_collate([ds[i] for i in ids]),
            "uint8": lambda: collate([ds.uint8_item(i) for i in ids])}
    best = {}
    for name, make in ways.items():
        make()
    for _ in range(rounds):
        for name, make in ways.items():
            tic = time.perf_counter()
            make()
            best[name] = max(best.get(name, 0.0), batch / (time.perf_counter() - tic))
    return best["float"], best["uint8"]


def clips_needed(mfu: float) -> float:
    """Clips/s an H100 consumes training the paper's recipe at `mfu` of its bf16 dense peak."""
    return STEP_BATCH * mfu * H100_BF16_PEAK / STEP_FLOP


def _sources(args: argparse.Namespace, tmp: Path) -> None:
    d = load_config("_paper").data
    need = clips_needed(args.mfu)
    workers_max = args.cores_per_gpu - 1                 # one core for the training process
    print(f"## Clips/s per core, {d.segments} segments, resize {d.resize}, crop {d.size}, 10 s 25 fps 320x240 sources "
          f"({args.videos} each), batches of {args.batch}, best of {args.rounds} rounds, one thread")
    print(f"An H100 at {args.mfu:.0%} MFU (step {STEP_FLOP / 1e12:.2f} TFLOP at batch {STEP_BATCH}, "
          f"{H100_BF16_PEAK / 1e12:.0f} TFLOP/s peak) consumes {need:.0f} clips/s; workers are capped at "
          f"{workers_max} of {args.cores_per_gpu} cores per GPU.\n")
    print("| source | float out (before) | uint8 out (now) | speed-up | cores per GPU | workers "
          "| MFU the workers feed |")
    print("|---|---|---|---|---|---|---|")
    threads = torch.get_num_threads()
    for name, (list_file, options) in write_sources(tmp / "sources", args.videos).items():
        ds = build_dataset("list", list_file.parent, list_file=list_file, subset="train", segments=d.segments,
                           size=d.size, resize=d.resize, val_fraction=0, **options)
        torch.set_num_threads(1)                         # one core: what a loader worker has
        try:
            before, now = batch_rates(ds, args.batch, args.rounds)
        finally:
            torch.set_num_threads(threads)
        cores = need / now
        workers = min(workers_max, math.ceil(cores))
        fed = min(args.mfu, workers * now / need * args.mfu)
        print(f"| {name} | {before:.1f} | {now:.1f} | {now / before:.2f}x | {cores:.1f} | {workers} | {fed:.0%} |",
              flush=True)
    print("\ncores per GPU: the uint8 rate's cores that feed the GPU at --mfu; workers: those, up to the cap; the "
          "device transforms (`to_device`) cost GPU time not counted here.\n")


def _decode(args: argparse.Namespace, tmp: Path) -> None:
    from torchcodec.decoders import VideoDecoder
    from torchcodec.encoders import VideoEncoder
    frames = smooth_frames(250)

    def compare(path: Path, label: str) -> None:
        whole = _rate(lambda: VideoDecoder(str(path), seek_mode="approximate").get_frames_in_range(0, 250),
                      max(2, args.repeats // 5))
        print(f"10 s, 25 fps, 320x240, {label}: whole-video decode {whole:.2f} clips/s ({whole * 250:.0f} frames/s)")
        for mode in ("approximate", "exact"):
            sampled = _rate(lambda: decode_video(path, train_indices(250, args.segments), mode), args.repeats)
            print(f"  {args.segments}-segment sampled decode, seek_mode={mode:<11}: {sampled:6.1f} clips/s "
                  f"({sampled * args.segments:.0f} frames/s per worker) -> {sampled / whole:.1f}x whole-video")

    # A sampled frame costs the decode from its keyframe, so the gain depends on the GOP: 1 is
    # all-intra, 12 is FFmpeg's MPEG-4 default (UCF101 / HMDB51 AVIs), 250 is x264's default.
    for gop in args.gop:
        path = tmp / f"ten_seconds_gop{gop}.mp4"
        VideoEncoder(frames, frame_rate=25).to_file(str(path), codec="libx264", crf=23, extra_options={"g": str(gop)})
        compare(path, f"H.264 with a keyframe every {gop} frames")
    source = tmp / f"ten_seconds_gop{max(args.gop)}.mp4"
    reencode_video(source, tmp / "reencoded.mp4", gop=args.reencode_gop)
    compare(tmp / "reencoded.mp4", f"that last file after `attnet data reencode --gop {args.reencode_gop}`")


def _keep_up(args: argparse.Namespace, tmp: Path) -> None:
    from attnet.engine.build import build_model, build_optimizer
    cfg = load_config("synthetic")
    d = cfg.data
    root = synthetic.ensure(tmp / "synthetic", **{**d.synthetic, "videos_per_class": {"train": 6, "val": 0, "test": 0}})
    ds = build_dataset("synthetic", root, subset="train", segments=d.segments, size=d.size, resize=d.resize,
                       hflip=d.hflip)
    in_process = _rate(lambda: ds[0], args.repeats)
    print(f"synthetic preset clips (T={d.segments}, {d.size} px): {in_process:.0f} clips/s in-process "
          f"({in_process * d.segments:.0f} frames/s per worker, decode + transform)")
    load_rate = loader_rate(build_loader(ds, batch_size=d.batch_size, train=True, workers=1), d.batch_size)
    clips, labels = next(iter(build_loader(ds, batch_size=d.batch_size, train=True)))
    clips = to_device(clips, "cpu")
    model = build_model(cfg, len(ds.classes), torch.device("cpu"))
    optimizer = build_optimizer(cfg, model)
    criterion = GLKALoss(ga_reg=cfg.model.ga_reg, margin=cfg.model.ga_margin)

    def step() -> None:
        loss, _ = criterion(model(clips), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    step_rate = _rate(step, 3) * d.batch_size
    verdict = "ahead of" if load_rate >= step_rate else "BEHIND"
    print(f"synthetic preset, batch {d.batch_size}: one loader worker {load_rate:.0f} clips/s | train step "
          f"{step_rate:.0f} clips/s ({torch.get_num_threads()} threads) -> the loader is {verdict} the trainer")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m attnet.bench data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", choices=["sources", "gop", "keep-up"], default=["sources", "gop", "keep-up"])
    p.add_argument("--mfu", type=float, default=0.4, help="the MFU the loader must feed (0.4 = 40 %%)")
    p.add_argument("--cores-per-gpu", type=int, default=16, help="CPU cores a node gives each GPU")
    p.add_argument("--videos", type=int, default=3, help="generated sources of each kind")
    p.add_argument("--batch", type=int, default=6, help="clips per timed batch")
    p.add_argument("--rounds", type=int, default=3, help="timed batches per way (the best is kept)")
    p.add_argument("--segments", type=int, default=12)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--gop", type=int, nargs="+", default=[1, 4, 12, 250], help="keyframe intervals to test")
    p.add_argument("--reencode-gop", type=int, default=4, help="keyframe interval of the re-encoded copy")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for the train step")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.parts:
            {"sources": _sources, "gop": _decode, "keep-up": _keep_up}[part](args, Path(tmp))
