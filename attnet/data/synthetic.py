"""The embedded synthetic action dataset: a small actor among look-alike distractors.

Each video shows a textured scene lit unevenly (red to blue left to right, dark to light
top to bottom), one *actor* (a square marked with a white X) and several *distractors* (the
same squares marked with a +, each moving in a straight line in a random direction).
Objects take the colour of the light where they stand. The class is the actor's motion, so temporal order
matters and the actor has to be found among the distractors:

    0 move_right   1 move_left   2 move_down   3 move_up
    4 orbit_cw     5 orbit_ccw   6 grow        7 shrink

Ground truth: the actor's box (x0, y0, x1, y1; pixels, x1/y1 exclusive) in every frame,
saved as boxes/<class>/<name>.npy beside videos/<class>/<name>.mp4. List files train.txt,
val.txt and test.txt use the generic "relative/path label" format, so the real loaders
read them; with frame_folders=True, frames/<class>/<name>/img_00001.jpg... and
{subset}_frames.txt ("relative/path num_frames label") are written too.
`difficulty` (0: the original videos) shrinks the objects and adds decoys, the first acting
out the opposite motion next to the actor, leaving room below the ceiling that attention can
win (studies/difficulty measures how much). `lighting=False` lights the scene evenly: an
object's colour no longer tells where it is.
Everything is a function of the seed (and the difficulty).
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .encoding import write_h264

CLASSES = ("move_right", "move_left", "move_down", "move_up", "orbit_cw", "orbit_ccw", "grow", "shrink")
SUBSET_SIZES = {"train": 75, "val": 8, "test": 16}


def _light(x: np.ndarray, y: np.ndarray, graded: bool = True) -> np.ndarray:
    """The scene's lighting: red to blue from left to right, dark to light from top to bottom.
    Objects take the colour of where they stand, so a pooled feature of an object tells where
    it is, and its colour over time tells how it moves. graded=False lights everything with the
    colour of the frame's centre: the cue is gone, the objects' shapes and motions stay."""
    if not graded:
        x, y = np.full_like(x, 0.5), np.full_like(y, 0.5)
    return np.stack([50 + 170 * (1 - x), 40 + 170 * y, 50 + 170 * x], axis=-1)


def _background(rng: np.random.Generator, size: int, lighting: bool = True) -> np.ndarray:
    """The lighting, dimmed, under low-frequency waves and a faint grid."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = 0.6 * _light(x, y, lighting)
    for _ in range(3):
        fx, fy, phase = rng.uniform(1, 5), rng.uniform(1, 5), rng.uniform(0, 2 * math.pi)
        image += rng.uniform(-12, 12, size=3) * np.sin(2 * math.pi * (fx * x + fy * y) + phase)[..., None]
    image[::8] += 10
    image[:, ::8] += 10
    return image


def _stamp(frame: np.ndarray, cx: float, cy: float, side: float, colour: np.ndarray, actor: bool) -> tuple:
    """Draw a marked square centred at (cx, cy); return its clipped box."""
    size = frame.shape[0]
    half = side / 2
    x0, y0 = int(round(cx - half)), int(round(cy - half))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    bx0, by0, bx1, by1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
    if bx1 <= bx0 or by1 <= by0:
        return (0, 0, 0, 0)
    frame[by0:by1, bx0:bx1] = colour
    n = y1 - y0
    k = np.arange(n)
    if actor:   # X: both diagonals
        rows, cols = np.concatenate([k, k]), np.concatenate([k, n - 1 - k])
    else:       # +: the two middle lines
        rows, cols = np.concatenate([k, np.full(n, n // 2)]), np.concatenate([np.full(n, n // 2), k])
    rows, cols = rows + y0, cols + x0
    keep = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    frame[rows[keep], cols[keep]] = 245.0
    return (bx0, by0, bx1, by1)


def _actor_path(label: int, t: np.ndarray, rng: np.random.Generator, size: int):
    """Centre x, centre y and side of the actor at times t in [0, 1]."""
    side = np.full_like(t, size * rng.uniform(0.18, 0.24))
    travel = size * rng.uniform(0.45, 0.6)
    start = rng.uniform(size * 0.2, size * 0.8 - travel) + size * 0.0
    across = rng.uniform(size * 0.2, size * 0.8)
    if label in (0, 1, 2, 3):
        along = start + travel * (t if label in (0, 2) else 1 - t)
        return (along, np.full_like(t, across), side) if label in (0, 1) else (np.full_like(t, across), along, side)
    if label in (4, 5):         # image y points down: increasing angle turns clockwise on screen
        radius = size * rng.uniform(0.18, 0.25)
        cx, cy = rng.uniform(size * 0.35, size * 0.65, size=2)
        angle = rng.uniform(0, 2 * math.pi) + (1 if label == 4 else -1) * 1.5 * math.pi * t
        return cx + radius * np.cos(angle), cy + radius * np.sin(angle), side
    small, large = size * 0.1, size * 0.3
    side = small + (large - small) * (t if label == 6 else 1 - t)
    cx, cy = rng.uniform(size * 0.3, size * 0.7, size=2)
    return np.full_like(t, cx), np.full_like(t, cy), side


def _inside(path: np.ndarray, margin: float, size: int) -> np.ndarray:
    """The path shifted (not clipped: its motion stays) to lie within [margin, size - margin]."""
    return path + max(0.0, margin - path.min()) - max(0.0, path.max() - (size - margin))


def _decoys(label: int, t: np.ndarray, actor: tuple, settings: dict, rng: np.random.Generator, size: int) -> list:
    """Look-alikes (+ marks, the actor's scale) acting out class motions. The first runs the
    actor's own path backwards next to it ("move right" gets a "move left" neighbour, an orbit
    the opposite orbit, "grow" a shrinking square) with settings["cancel"] times the actor's
    area: the light's colour is linear in position, so in the global average its colour
    change cancels that fraction of the actor's. The others act out random other classes
    anywhere in the frame, diluting what is left."""
    ax, ay, aside = actor
    out = []
    for k in range(settings["decoys"]):
        if k == 0:
            angle, distance = rng.uniform(0, 2 * math.pi), size * rng.uniform(0.2, 0.35)
            margin = aside.max() / 2
            xs = _inside(ax[::-1] + distance * math.cos(angle), margin, size)
            ys = _inside(ay[::-1] + distance * math.sin(angle), margin, size)
            sides = aside[::-1] * math.sqrt(settings["cancel"])
        else:
            other = (label + int(rng.integers(1, len(CLASSES)))) % len(CLASSES)
            xs, ys, sides = _actor_path(other, t, rng, size)
            sides = sides * settings["scale"]
        out.append((xs, ys, sides, rng.uniform(0.85, 1.15, size=3)))
    return out


def difficulty_settings(difficulty: float) -> dict:
    """What a difficulty does: the actor's (and distractors') size factor, the number of decoys
    added and the first decoy's area relative to the actor's (0 reproduces the original dataset
    exactly). Between 0 and 1 the cancelling decoy grows; above 1 more decoys come."""
    if difficulty < 0:
        raise ValueError(f"difficulty must be >= 0, got {difficulty}")
    return {"scale": 1.0 / (1.0 + 0.5 * difficulty), "decoys": math.ceil(2 * difficulty),
            "cancel": min(difficulty, 1.0)}


def render(label: int, seed: int | tuple, frames: int = 16, size: int = 112,
           distractors: int = 2, difficulty: float = 0.0, lighting: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One video of class `label`: uint8 frames [F, size, size, 3] and actor boxes [F, 4].

    difficulty > 0 shrinks the actor and the distractors by difficulty_settings' scale and
    adds decoys: one acting out the opposite motion next to the actor, the others other
    classes (see _decoys), so that the global average carries less of the class while the
    actor's box carries all of it. The decoys are drawn from their own random stream: the
    scene, paths and noise stay those of difficulty 0. lighting=False removes the lighting cue
    (see _light) and draws the same random numbers, so paths, boxes and texture are unchanged."""
    settings = difficulty_settings(difficulty)
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, frames)
    background = _background(rng, size, lighting)
    ax, ay, aside = _actor_path(label, t, rng, size)
    aside = aside * settings["scale"]
    actor_tint = rng.uniform(0.85, 1.15, size=3)
    movers = []
    for _ in range(distractors):
        start = rng.uniform(size * 0.15, size * 0.85, size=2)
        heading = rng.uniform(0, 2 * math.pi)
        speed = size * rng.uniform(0.2, 0.5)
        velocity = speed * np.array([math.cos(heading), math.sin(heading)])
        track = start[:, None] + velocity[:, None] * t
        movers.append((track[0], track[1], np.full_like(t, size * rng.uniform(0.10, 0.15) * settings["scale"]),
                       rng.uniform(0.85, 1.15, size=3)))
    if settings["decoys"]:
        decoy_rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), 1])
        movers += _decoys(label, t, (ax, ay, aside), settings, decoy_rng, size)
    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    boxes = np.zeros((frames, 4), dtype=np.int32)
    for f in range(frames):
        frame = background.copy()
        for xs, ys, sides, tint in movers:
            cx, cy = xs[f], ys[f]
            _stamp(frame, cx, cy, sides[f],
                   tint * _light(np.clip(cx / size, 0, 1), np.clip(cy / size, 0, 1), lighting), actor=False)
        colour = actor_tint * _light(np.clip(ax[f] / size, 0, 1), np.clip(ay[f] / size, 0, 1), lighting)
        boxes[f] = _stamp(frame, ax[f], ay[f], aside[f], colour, actor=True)   # drawn on top
        frame += rng.normal(0, 4, size=frame.shape)
        video[f] = np.clip(frame, 0, 255).astype(np.uint8)
    return video, boxes


def _write_frames(folder: Path, video: np.ndarray) -> None:
    import torchvision.io
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(video, start=1):
        data = torchvision.io.encode_jpeg(torch.from_numpy(frame).permute(2, 0, 1).contiguous(), quality=95)
        torchvision.io.write_file(str(folder / f"img_{i:05d}.jpg"), data)


def generate(out_dir: str | Path, num_classes: int = 8, videos_per_class: dict[str, int] | None = None,
             frames: int = 16, size: int = 112, fps: int = 8, distractors: int = 2, seed: int = 0,
             frame_folders: bool = False, difficulty: float = 0.0, lighting: bool = True) -> Path:
    """Write the dataset under out_dir (replacing an older one) and return out_dir.

    A meta.json records the arguments (the difficulty among them); `ensure` uses it to skip
    regeneration. videos_per_class["test"] sets the test-set size, hence the binomial error
    of a top-1 (attnet.stats.videos_for_se: 625 test videos for 2 points at 50 %).
    """
    if not 2 <= num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must be in 2..{len(CLASSES)}, got {num_classes}")
    difficulty_settings(difficulty)   # rejects a negative difficulty before anything is deleted
    counts = {**SUBSET_SIZES, **(videos_per_class or {})}
    out = Path(out_dir)
    meta = dict(num_classes=num_classes, videos_per_class=counts, frames=frames, size=size, fps=fps,
                distractors=distractors, seed=seed, frame_folders=frame_folders, difficulty=difficulty,
                lighting=lighting)
    for sub in ("videos", "boxes", "frames"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "meta.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {s: [] for s in counts}
    frame_lines: dict[str, list[str]] = {s: [] for s in counts}
    clips = []                          # (label, class name, index, clip name)
    for label, name in enumerate(CLASSES[:num_classes]):
        for sub in ("videos", "boxes"):
            (out / sub / name).mkdir(parents=True, exist_ok=True)
        index = 0
        for subset, count in counts.items():
            for _ in range(count):
                clip = f"{name}_{index:04d}"
                clips.append((label, name, index, clip))
                lines[subset].append(f"videos/{name}/{clip}.mp4 {label}")
                frame_lines[subset].append(f"frames/{name}/{clip} {frames} {label}")
                index += 1

    def make(item: tuple) -> None:
        label, name, index, clip = item
        video, boxes = render(label, (seed, label, index), frames, size, distractors, difficulty, lighting)
        # fastdecode (no CABAC, no deblocking) makes decoding ~4x cheaper, so loaders keep up on CPU
        write_h264(out / "videos" / name / f"{clip}.mp4", video, fps, crf=18, tune="fastdecode")
        np.save(out / "boxes" / name / f"{clip}.npy", boxes)
        if frame_folders:
            _write_frames(out / "frames" / name / clip, video)

    # one ffmpeg process per video, most of its time starting up: a few at once keep the cores busy
    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1)) as pool:
        list(pool.map(make, clips))
    for subset in counts:
        (out / f"{subset}.txt").write_text("\n".join(lines[subset]) + "\n")
        if frame_folders:
            (out / f"{subset}_frames.txt").write_text("\n".join(frame_lines[subset]) + "\n")
    (out / "classes.txt").write_text("\n".join(CLASSES[:num_classes]) + "\n")
    (out / "meta.json").write_text(json.dumps(meta, indent=1))   # written last: marks a complete dataset
    return out


def ensure(out_dir: str | Path, **kwargs) -> Path:
    """Generate the dataset unless out_dir already holds one made with the same arguments.
    Processes starting at once take turns (a lock file beside out_dir): the first generates,
    the others find its meta.json and return, instead of rewriting files the first is reading."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)         # released when the file closes
        return _ensure(out, **kwargs)


def _ensure(out: Path, **kwargs) -> Path:
    meta_path = out / "meta.json"
    wanted = dict(num_classes=8, videos_per_class=SUBSET_SIZES, frames=16, size=112, fps=8, distractors=2,
                  seed=0, frame_folders=False, difficulty=0.0, lighting=True)
    wanted.update(kwargs)
    wanted["videos_per_class"] = {**SUBSET_SIZES, **(kwargs.get("videos_per_class") or {})}
    if meta_path.is_file():
        have = {"difficulty": 0.0, "lighting": True, **json.loads(meta_path.read_text())}   # made before the knobs
        if have == wanted:
            return out
    return generate(out, **wanted)


def load_boxes(root: str | Path, relpath: str | Path) -> np.ndarray:
    """Actor boxes [F, 4] (x0, y0, x1, y1) of the video at `relpath` ('videos/<class>/<name>.mp4')."""
    rel = Path(relpath)
    if rel.is_absolute():
        rel = rel.relative_to(Path(root))
    path = Path(root) / "boxes" / Path(*rel.parts[1:]).with_suffix(".npy")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ground-truth boxes; regenerate with `attnet data synth`")
    return np.load(path)
