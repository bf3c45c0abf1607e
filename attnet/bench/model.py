"""Train-step and inference throughput of GLKANet, optionally beside the authors' release.

    python -m attnet.bench model --backbone resnet34 --segments 12 --size 224 --batch 2
    python -m attnet.bench model ... --compare-authors /path/to/attention-network

With --compare-authors, their Spatial_TemporalNet (imported from a checkout the user
provides; nothing of it ships here) and ours take training steps alternately in this one
process, so both see the same machine load, and the ratio of median step times is printed.
Their step runs in float32 (their release has no AMP); --amp applies to ours, on CPU too.
--compare-compile does the same for our model eager and under torch.compile (which fuses the
batch norm, ReLU and copies that bound a CPU step with AMX).

It also prints the FLOPs of our training step (torch.utils.flop_counter) and the share of
the device's matmul peak in the --amp dtype (a matmul of up to 4096^3 timed in the same run) it reaches;
--ops N, where a CPU step's time goes, operator by operator. The synthetic preset's step:

    python -m attnet.bench model --backbone tiny --segments 6 --size 112 --batch 16 --classes 8 \
        --hidden 128 --amp bf16 --threads 1 --ops 8
"""
from __future__ import annotations

import argparse
import importlib
import platform
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from attnet.engine import runtime
from attnet.losses import GLKALoss, ga_regularization
from attnet.models import BACKBONES, GLKANet


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m attnet.bench model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet34", choices=BACKBONES)
    p.add_argument("--segments", type=int, default=12)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--classes", type=int, default=51)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (as run.device)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--compare-compile", action="store_true",
                   help="also time the torch.compile'd model beside the eager one and print the ratio")
    p.add_argument("--amp", choices=list(runtime.AMP_CHOICES), default="off",
                   help="autocast dtype, CPU or CUDA (as optim.amp; fp16 steps through a GradScaler)")
    p.add_argument("--ops", type=int, default=0, metavar="N",
                   help="also print the N operators with the most self CPU time over 3 train steps (torch.profiler)")
    p.add_argument("--compare-authors", metavar="PATH", default=None,
                   help="checkout of ZhenxingZheng/attention-network to time beside ours")
    return p.parse_args(argv)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: KiB -> MiB, whole process


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], None], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - start


def matmul_peak(device: torch.device, dtype: torch.dtype, budget_s: float = 0.2, repeats: int = 3) -> tuple[float, int]:
    """(FLOP/s, n) of the fastest of `repeats` n x n x n matmuls in `dtype`: the device's practical
    peak. n doubles from 256 up to 4096 while one matmul takes under `budget_s`, so a dtype the
    device only emulates (CPU bf16 without AVX512-BF16 / AMX) is measured in seconds, not minutes."""
    n = 256
    while True:
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        first = timed(lambda: a @ b, device)      # also the warm-up
        if first < budget_s and n < 4096:
            n *= 2
            continue
        return 2 * n**3 / min([first] + [timed(lambda: a @ b, device) for _ in range(repeats - 1)]), n


def step_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call of `step` (forward and backward), as torch's FLOP counter sees them."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def top_ops(step: Callable[[], None], top: int, steps: int = 3) -> list[tuple[str, float, float]]:
    """(operator, self CPU ms per step, % of all self CPU time) of the `top` operators of `steps`
    calls of `step`: where a CPU step's time goes (self times do not overlap, so shares add up)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [(e.key, e.self_cpu_time_total / 1e3 / steps, 100 * e.self_cpu_time_total / total) for e in events[:top]]


def our_step(model, x, y, optimizer, criterion, rt: runtime.Runtime) -> Callable[[], None]:
    """The trainer's step: the runtime's autocast, the loss outside it, the fp16 scaler."""
    scaler = rt.grad_scaler()

    def step() -> None:
        with rt.autocast():
            out = model(x)
        loss, _ = criterion(out, y)
        optimizer.zero_grad(set_to_none=True)
        runtime.backward_step(loss, optimizer, scaler)
    return step


AUTHORS_DATASETS = {51: "hmdb", 101: "ucf", 600: "kinetics"}   # their class count comes from the dataset name


def authors_model(path: str, backbone: str, segments: int, hidden: int, classes: int, size: int):
    """Their Spatial_TemporalNet on torch 2.x: `resnet34(True)` becomes `weights=None`."""
    import torchvision.models as tvm

    from attnet.models.backbones import RESNETS
    if backbone not in RESNETS or classes not in AUTHORS_DATASETS or size % 32:
        raise SystemExit(f"--compare-authors needs a ResNet backbone ({', '.join(RESNETS)}), --classes in "
                         f"{sorted(AUTHORS_DATASETS)} (their datasets) and --size a multiple of 32; "
                         f"got {backbone}, {classes}, {size}")
    if not (Path(path) / "Models.py").is_file():
        raise SystemExit(f"{path}: no Models.py; pass a checkout of ZhenxingZheng/attention-network")
    original = getattr(tvm, backbone)
    setattr(tvm, backbone, lambda *args, **kwargs: original(weights=None))
    sys.path.insert(0, path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models = importlib.import_module("Models")
            return models.Spatial_TemporalNet(basemodel=backbone, dataset=AUTHORS_DATASETS[classes], segment=segments,
                                              attention_type="all", hidden_size=hidden, img_dim=RESNETS[backbone],
                                              kernel_size=size // 32)
    finally:
        setattr(tvm, backbone, original)
        sys.path.remove(path)


def authors_step(net, x, y, optimizer) -> Callable[[], None]:
    """Their train step: CE on the fused output plus GA on softmaxed stream outputs."""
    frames = x.reshape(-1, *x.shape[2:])

    def step() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            average, auto, learned, fused = net(frames)
        loss = F.cross_entropy(fused, y) + ga_regularization(average, auto, y) + ga_regularization(average, learned, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.compile and args.compare_compile:
        raise SystemExit("--compare-compile times the eager model beside the compiled one; drop --compile")
    rt = runtime.start(args.device, args.amp, args.threads)    # device, cudnn, autocast as in training
    device = rt.device
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    rt.seed_model()
    model = GLKANet(args.classes, backbone=args.backbone, hidden_size=args.hidden).to(device, memory_format=memory_format)
    runner = torch.compile(model) if args.compile else model
    x = torch.randn(args.batch, args.segments, 3, args.size, args.size, device=device)
    y = torch.randint(0, args.classes, (args.batch,), device=device)
    sgd = dict(lr=1e-3, momentum=0.9, weight_decay=1e-5)
    ours = our_step(runner, x, y, torch.optim.SGD(model.parameters(), **sgd), GLKALoss(), rt)
    steps = {"attnet": ours}
    if args.compare_compile:          # the same weights, its own optimizer: only the step's speed is compared
        steps["compiled"] = our_step(torch.compile(model), x, y, torch.optim.SGD(model.parameters(), **sgd),
                                     GLKALoss(), rt)
    if args.compare_authors:
        theirs = authors_model(args.compare_authors, args.backbone, args.segments, args.hidden, args.classes,
                               args.size).to(device)
        steps["authors"] = authors_step(theirs, x, y, torch.optim.SGD(theirs.parameters(), **sgd))

    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"config: {args.backbone}, T={args.segments}, {args.size}px, batch {args.batch}, K={args.classes}, "
          f"channels_last={args.channels_last}, compile={args.compile}, precision={rt.precision}")
    times: dict[str, list[float]] = {name: [] for name in steps}
    for name, step in steps.items():
        timed(step, device)                       # warm-up (allocations, compile, cudnn autotune)
    peak_dtype = runtime.AMP_DTYPES[rt.amp] or torch.float32
    peaks = []
    for _ in range(args.steps):
        for name, step in steps.items():          # alternate, so load drifts hit both alike
            times[name].append(timed(step, device))
        peaks.append(matmul_peak(device, peak_dtype))   # the peak under the same load, best round kept
    for name, t in times.items():
        med = statistics.median(t)
        print(f"train  {name:8s} median step {med:.3f} s  ({args.batch / med:.2f} clips/s; "
              f"steps: {' '.join(f'{v:.2f}' for v in t)})")
    if "authors" in times:
        ratio = statistics.median(times["authors"]) / statistics.median(times["attnet"])
        print(f"speed-up of attnet over the authors' release: {ratio:.2f}x (authors' median / ours)")
    if "compiled" in times:
        ratio = statistics.median(times["attnet"]) / statistics.median(times["compiled"])
        print(f"speed-up of torch.compile: {ratio:.2f}x (attnet median / compiled median)")

    flops = step_flops(ours)
    peak, n = max(peaks)
    achieved = flops / statistics.median(times["attnet"])
    print(f"attnet train step: {flops / 1e9:.1f} GFLOP, {achieved / 1e9:.1f} GFLOP/s = {100 * achieved / peak:.1f}% "
          f"of the {str(peak_dtype).removeprefix('torch.')} matmul peak ({peak / 1e9:.1f} GFLOP/s, {n}^3, this run)")

    if args.ops:
        print(f"train step, self CPU time per operator (torch.profiler, 3 steps; top {args.ops}):")
        for name, ms, share in top_ops(ours, args.ops):
            print(f"  {name:40s} {ms:9.1f} ms/step {share:5.1f} %")

    model.eval()
    with torch.no_grad(), rt.autocast():
        timed(lambda: runner(x), device)
        infer = [timed(lambda: runner(x), device) for _ in range(args.steps)]
    med = statistics.median(infer)
    print(f"infer  attnet   median {med:.3f} s  ({args.batch / med:.2f} clips/s)")
    print(f"peak memory: {peak_memory_mb(device):.0f} MiB ({'CUDA allocated' if device.type == 'cuda' else 'process max RSS'})")
