"""Decoding throughput: T-segment sampled decoding against whole-video decoding, and
whether one loader worker keeps up with a train step of the `synthetic` preset.

    python -m attnet.bench data [--segments 12] [--repeats 20] [--threads N]

Part 1 encodes a 10 s, 25 fps, 320x240 video (H.264, at several keyframe intervals, then the
longest-GOP one re-encoded by `attnet data reencode`) and times one sampled clip per call,
opening the file each time as the dataset does. Part 2 builds
the `synthetic` preset's dataset, model, loss and optimiser and prints the clips/s of one
loader worker beside the clips/s of training steps.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from attnet.config import load_config
from attnet.data import build_dataset, build_loader, synthetic
from attnet.data.decoding import decode_video
from attnet.data.reencode import reencode_video
from attnet.data.sampling import train_indices
from attnet.losses import GLKALoss


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


def loader_rate(loader, batch_size: int) -> float:
    """Clips/s of a DataLoader pass, timed from its first batch (worker start-up left out)."""
    batches = 0
    for i, _ in enumerate(loader):
        if i == 0:
            start = time.perf_counter()
        else:
            batches += 1
    return batches * batch_size / (time.perf_counter() - start)


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
        _decode(args, Path(tmp))
        _keep_up(args, Path(tmp))
