"""Decoding throughput: 12-segment sampled decoding against whole-video decoding, and
whether one loader worker keeps up with a train step of the `synthetic` preset.

    python -m attnet.bench data [--segments 12] [--repeats 20]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from attnet.data import build_dataset, build_loader, synthetic
from attnet.data.decoding import decode_video
from attnet.data.sampling import train_indices
from attnet.losses import GLKALoss
from attnet.models import GLKANet


def _rate(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return repeats / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m attnet.bench data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--segments", type=int, default=12)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--batch", type=int, default=8, help="batch of the synthetic train step")
    p.add_argument("--gop", type=int, nargs="+", default=[12, 250], help="keyframe intervals to test")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        from torchcodec.decoders import VideoDecoder
        from torchcodec.encoders import VideoEncoder
        frames = torch.randint(0, 256, (250, 3, 240, 320), dtype=torch.uint8)
        frames = torch.nn.functional.avg_pool2d(frames.float(), 9, 1, 4).to(torch.uint8)   # smooth, codec-like
        # Seeking costs the decode from the previous keyframe, so the gain depends on the GOP:
        # 12 is FFmpeg's MPEG-4 default (UCF101 / HMDB51 AVIs), 250 is x264's default.
        for gop in args.gop:
            path = Path(tmp) / f"ten_seconds_gop{gop}.mp4"
            VideoEncoder(frames, frame_rate=25).to_file(str(path), codec="libx264", crf=23,
                                                        extra_options={"g": str(gop)})
            sampled = _rate(lambda: decode_video(path, train_indices(250, args.segments)), args.repeats)
            whole = _rate(lambda: VideoDecoder(str(path), seek_mode="approximate").get_frames_in_range(0, 250),
                          max(2, args.repeats // 5))
            print(f"10 s, 25 fps, 320x240 mp4, keyframe every {gop} frames: {args.segments}-segment sampled decode "
                  f"{sampled:.1f} clips/s ({sampled * args.segments:.0f} frames/s per worker), whole-video decode "
                  f"{whole:.2f} clips/s ({whole * 250:.0f} frames/s) -> {sampled / whole:.1f}x")

        root = synthetic.ensure(Path(tmp) / "synthetic", videos_per_class={"train": 4, "val": 0, "test": 0})
        ds = build_dataset("synthetic", root, subset="train", segments=8, size=112, resize=112)
        loader = build_loader(ds, batch_size=args.batch, train=True, workers=1)
        it = iter(loader)
        next(it)
        start = time.perf_counter()
        batches = 3
        for _ in range(batches):
            clips, labels = next(it)
        load_rate = batches * args.batch / (time.perf_counter() - start)
        model = GLKANet(len(ds.classes), backbone="tiny", hidden_size=128, num_layers=2)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        crit = GLKALoss()

        def step():
            loss, _ = crit(model(clips), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        step_rate = _rate(step, 3) * args.batch
        print(f"synthetic preset (T=8, 112 px, batch {args.batch}): one loader worker {load_rate:.0f} clips/s, "
              f"train step {step_rate:.0f} clips/s -> loader is {'ahead' if load_rate >= step_rate else 'BEHIND'}")
