"""`attnet data synth | check | reencode | extract-frames | layout`."""
from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import torch

from . import frames, lists, reencode, synthetic
from .datasets import DATASETS, is_frame_folder
from .decoding import decode_frames, folder_num_frames, frame_count, open_video, read_frames
from .layouts import LAYOUTS
from .lists import DataError


def _synth(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    counts = {"train": args.train, "val": args.val, "test": args.test}
    out = synthetic.generate(args.out, num_classes=args.classes, videos_per_class=counts, frames=args.frames,
                             size=args.size, distractors=args.distractors, seed=args.seed,
                             frame_folders=args.frame_folders, difficulty=args.difficulty,
                             lighting=not args.flat_light)
    total = args.classes * sum(counts.values())
    print(f"wrote {total} videos ({args.classes} classes, {counts}) to {out} in {time.perf_counter() - start:.1f} s")


def _subsets(name: str, root: Path, split: int, list_file: str | None):
    """(subset, records, classes, missing) for every subset the dataset has."""
    if name == "ucf101":
        for subset in ("train", "test"):
            yield (subset, *lists.ucf101(root, split, subset), [])
    elif name == "hmdb51":
        for subset in ("train", "test"):
            yield (subset, *lists.hmdb51(root, split, subset), [])
    elif name.startswith("kinetics"):
        for subset in ("train", "val"):
            yield (subset, *lists.kinetics(root, subset))
    else:
        files = [Path(list_file)] if list_file else sorted(root.glob("*.txt"))
        for path in files:
            if path.name != "classes.txt":
                yield (path.stem, *lists.list_file(root, path), [])


def _read(record, template: str, start: int, fast: bool) -> None:
    """Read a video or frame folder as training would: every frame decoded, in chunks (fast:
    the container header or the folder listing only). A problem raises DataError."""
    if is_frame_folder(record):
        count = folder_num_frames(record.path, template)
        for chunk in [] if fast else torch.arange(count).split(64):
            decode_frames(record.path, chunk, template, start)
        return
    decoder = open_video(record.path)
    count = frame_count(decoder, record.path)
    for chunk in [] if fast else torch.arange(count).split(64):
        read_frames(decoder, record.path, chunk)


def _check(args: argparse.Namespace) -> None:
    root = Path(args.root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found; see `attnet data layout {args.dataset}`")
    problems = 0
    for subset, records, classes, missing in _subsets(args.dataset, root, args.split, args.list_file):
        missing, bad = list(missing), []
        for record in records:
            try:
                if not record.path.exists():
                    missing.append(str(record.path))
                else:
                    _read(record, args.frame_template, args.frame_start, args.fast)
            except (DataError, OSError) as err:
                bad.append(str(err).split(";")[0])
        counts = Counter(r.label for r in records)
        sizes = sorted(counts.values()) or [0]
        print(f"{subset}: {len(records)} videos, {len(classes)} classes "
              f"(per class min {sizes[0]}, median {sizes[len(sizes) // 2]}, max {sizes[-1]}), "
              f"{len(missing)} missing, {len(bad)} unreadable")
        for name in missing[: args.show]:
            print(f"  missing: {name}")
        for line in bad[: args.show]:
            print(f"  unreadable: {line}")
        empty = [c for i, c in enumerate(classes) if counts.get(i, 0) == 0]
        if empty:
            print(f"  classes without videos: {', '.join(empty[: args.show])}")
        problems += len(bad) + len(missing)
    if problems:
        raise DataError(f"{problems} problems (listed above); fix or remove those videos, or train with "
                        "data.on_bad_video=skip")
    print("ok")


def _failures(failed: list[str], show: int, done_to_them: str) -> None:
    """List the first `show` failures of a conversion; any makes the exit status 1."""
    for line in failed[:show]:
        print(f"  failed: {line}")
    if failed:
        raise DataError(f"{len(failed)} videos could not be {done_to_them} (listed above); "
                        "fix or remove them and rerun: finished videos are kept")


def _reencode(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    done = reencode.reencode(args.src, args.dst, gop=args.gop, crf=args.crf, overwrite=args.overwrite, jobs=args.jobs,
                             progress=True)
    print(f"{args.dst}: {len(done['written'])} videos re-encoded (keyframe every {args.gop} frames), "
          f"{len(done['skipped'])} kept from an earlier run, {len(done['copied'])} other files copied, "
          f"{len(done['failed'])} failed, in {time.perf_counter() - start:.0f} s")
    _failures(done["failed"], args.show, "re-encoded")


def _extract_frames(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    done = frames.extract_frames(args.src, args.dst, dataset=args.dataset, short_side=args.short_side,
                                 quality=args.quality, jobs=args.jobs, overwrite=args.overwrite, progress=True)
    print(f"{args.dst}: {len(done['written'])} videos extracted to frame folders (short side <= {args.short_side}, "
          f"{frames.TEMPLATE} from 0), {len(done['skipped'])} kept from an earlier run, {len(done['failed'])} failed, "
          f"{len(done['lists'])} list files written, in {time.perf_counter() - start:.0f} s")
    _failures(done["failed"], args.show, "extracted")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="attnet data", description="Datasets: synthesize, check, re-encode, show layouts.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("synth", help="generate the synthetic action dataset")
    p.add_argument("--out", default="data/synthetic")
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--train", type=int, default=synthetic.SUBSET_SIZES["train"], help="videos per class")
    p.add_argument("--val", type=int, default=synthetic.SUBSET_SIZES["val"])
    p.add_argument("--test", type=int, default=synthetic.SUBSET_SIZES["test"])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--distractors", type=int, default=2, help="moving look-alikes per video")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", type=float, default=0.0, help="0: the original; higher: smaller actor, decoys")
    p.add_argument("--flat-light", action="store_true",
                   help="light the scene evenly: no colour cue to where objects are")
    p.add_argument("--frame-folders", action="store_true", help="also write JPEG frame folders")
    p.set_defaults(run=_synth)
    p = sub.add_parser("check", help="count videos per split, decode every one, list missing/unreadable files")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--root", required=True)
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--list-file", default=None)
    p.add_argument("--frame-template", default="img_{:05d}.jpg")
    p.add_argument("--frame-start", type=int, default=1, help="index of the first frame file")
    p.add_argument("--fast", action="store_true",
                   help="only check that files exist and their headers open (no frame decoded)")
    p.add_argument("--show", type=int, default=20, help="how many names to list per problem")
    p.set_defaults(run=_check)
    p = sub.add_parser("reencode", help="copy a dataset with short-GOP H.264 videos (fast sampled decoding)",
                       description=reencode.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="dataset root to read")
    p.add_argument("--dst", required=True, help="new dataset root (same tree and names)")
    p.add_argument("--gop", type=int, default=4, help="frames between keyframes")
    p.add_argument("--crf", type=int, default=18, help="x264 quality (lower is better, 18 is visually lossless)")
    p.add_argument("--overwrite", action="store_true", help="re-encode videos already in --dst")
    p.add_argument("--jobs", type=int, default=None, help="processes at a time (default: every core)")
    p.add_argument("--show", type=int, default=20, help="how many failures to list")
    p.set_defaults(run=_reencode)
    p = sub.add_parser("extract-frames", help="a dataset's videos as JPEG frame folders (the fastest to train from)",
                       description=frames.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="dataset root to read")
    p.add_argument("--dst", required=True, help="new dataset root of frame folders")
    p.add_argument("--dataset", choices=sorted(frames.AUTHORS), default=None,
                   help="write the authors' layout and split lists (default: the tree of --src, no lists)")
    p.add_argument("--short-side", type=int, default=256, help="shrink frames to this short side at most (pixels)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality, 1-100")
    p.add_argument("--jobs", type=int, default=None, help="processes at a time (default: every core)")
    p.add_argument("--overwrite", action="store_true", help="extract videos already in --dst again")
    p.add_argument("--show", type=int, default=20, help="how many failures to list")
    p.set_defaults(run=_extract_frames)
    p = sub.add_parser("layout", help="print the expected directory tree and download pages")
    p.add_argument("dataset", choices=sorted(LAYOUTS))
    p.set_defaults(run=lambda a: print(LAYOUTS[a.dataset]))
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except DataError as err:
        parser.exit(1, f"error: {err}\n")
