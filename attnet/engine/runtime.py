"""The one runtime of training, evaluation, the benchmarks and the notebooks: device, process
group, seeds, precision (autocast and GradScaler) and cudnn settings.

    rt = runtime.from_config(cfg)            # or runtime.start("auto", amp="bf16")
    rt.seed_model(); model = build_model(cfg, k, rt.device)
    rt.seed_epoch(epoch)                     # this rank's data order, offsets, crops, dropout
    with rt.autocast(): out = model(clips)

Under torchrun, srun or submitit every rank gets the GPU of its local rank (the only GPU of a
task that sees one); one process honours run.device.
"""
from __future__ import annotations

import atexit
import gc
import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from attnet.config import Config

from .distributed import DistInfo

PRECISION = {"bf16": "bf16", "fp16": "fp16", "off": "fp32"}   # optim.amp -> what final.json records
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}
AMP_CHOICES = ("auto", *PRECISION)


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX512-BF16 or AMX). Without it CPU bf16 autocast
    is emulated: measured on an AVX2-only EPYC, a 1024^3 matmul 50x and a 3x3 convolution 10x
    slower than float32."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def native_amp(device: torch.device) -> str:
    """What optim.amp=auto means on `device`: bf16 where it has bfloat16 units, else fp16 on a GPU
    (loss-scaled) and float32 on a CPU."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    return "bf16" if cpu_has_bf16() else "off"


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch (every device) from one seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def stream_seed(seed: int, rank: int, epoch: int) -> int:
    """A 32-bit seed for (run seed, rank, epoch), decorrelated by NumPy's SeedSequence rather than
    summed, so that no (rank, epoch) pair replays another's stream."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])


@dataclass
class Runtime(DistInfo):
    """DistInfo (rank, world size, device) plus the precision and seed every phase shares."""
    amp: str = "off"            # optim.amp resolved: bf16 | fp16 | off
    seed: int = 0

    @property
    def precision(self) -> str:
        """What the record says ran: "tf32" where amp=off on a GPU still lets matmuls or
        convolutions round their inputs to TF32 (start() turns that off, so it says "fp32")."""
        tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
        return "tf32" if self.amp == "off" and self.device.type == "cuda" and tf32 else PRECISION[self.amp]

    def autocast(self) -> torch.autocast:
        """bf16 / fp16 autocast on this device, CPU included; a no-op for amp=off."""
        dtype = AMP_DTYPES[self.amp]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A loss scaler for fp16 only (bf16 has float32's range and needs none)."""
        return torch.amp.GradScaler(self.device.type) if self.amp == "fp16" else None

    def seed_model(self) -> None:
        """The run seed on every rank: each builds the same initial weights."""
        seed_everything(self.seed)

    def seed_epoch(self, epoch: int) -> int:
        """Reseed the global RNGs for this rank and epoch (frame offsets, crops and dropout differ
        between ranks and do not depend on earlier epochs, so a resumed run repeats them); returns
        the seed, for the loader's generator (worker seeds)."""
        seed = stream_seed(self.seed, self.rank, epoch)
        seed_everything(seed)
        return seed


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list ("node[01-04,07],gpu2" -> "node01"): `scontrol show
    hostnames` where SLURM's tools are installed, else the common forms parsed here."""
    if shutil.which("scontrol"):
        shown = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True)
        if shown.returncode == 0 and shown.stdout.split():
            return shown.stdout.split()[0]
    host = re.split(r",(?![^\[]*\])", nodelist)[0]          # the first entry, commas inside [...] kept
    while "[" in host:                                        # each bracket: its first number
        head, _, rest = host.partition("[")
        inside, _, tail = rest.partition("]")
        host = head + inside.split(",")[0].split("-")[0] + tail
    return host


def slurm_port(job_id: str) -> int:
    """A MASTER_PORT every task of a SLURM job derives alike from the job id (and two jobs on one
    node mostly apart)."""
    return 20000 + int(re.sub(r"\D", "", job_id) or 0) % 20000


def _launch_env() -> tuple[int, int, int] | None:
    """(rank, local rank, world size) of a process started by torchrun, by a submitit job or by
    SLURM's srun; for the last two the process group's MASTER_ADDR / MASTER_PORT / RANK /
    WORLD_SIZE are exported first (values already set are kept). None for a lone process (a
    batch script's own shell under sbatch, without srun, is one; so is a job of one task)."""
    env = os.environ
    if "LOCAL_RANK" in env:                                   # torchrun
        local = int(env["LOCAL_RANK"])
        return int(env.get("RANK", local)), local, int(env.get("WORLD_SIZE", "1"))
    if env.get("SUBMITIT_EXECUTOR"):                          # submitit, local or on SLURM
        from submitit.helpers import TorchDistributedEnvironment
        job = TorchDistributedEnvironment()
        rank, local, world = job.rank, job.local_rank, job.world_size
        master = lambda: (job.master_addr, job.master_port)
    elif "SLURM_STEP_ID" in env and "SLURM_PROCID" in env:    # a task of srun
        rank, local, world = int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), int(env["SLURM_NTASKS"])
        master = lambda: (first_host(env["SLURM_JOB_NODELIST"]), slurm_port(env["SLURM_JOB_ID"]))
    else:
        return None
    if world == 1:                                            # one task: a lone process, run.device honoured
        return None
    addr, port = master()
    for key, value in (("RANK", rank), ("WORLD_SIZE", world), ("LOCAL_RANK", local), ("MASTER_ADDR", addr),
                       ("MASTER_PORT", port)):
        env.setdefault(key, str(value))
    return rank, local, world


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """The device of run.device=`name` (auto | cpu | cuda | cuda:N). Launched as one of several
    processes (`local_rank` given) a CUDA rank takes GPU `local_rank`, or the only GPU it sees
    (srun --gpus-per-task=1): an explicit cuda:N would put every rank on one GPU, so it is
    overridden there."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if not name.startswith("cuda"):
        return torch.device(name)
    if not torch.cuda.is_available():
        raise RuntimeError(f"run.device={name}, but CUDA is not available here; use run.device=cpu or auto")
    count = torch.cuda.device_count()
    if local_rank is not None:
        index = 0 if count == 1 else local_rank
        where, fix = f"local rank {local_rank}", f"start at most {count} per node"
        if name != "cuda" and local_rank == 0:     # said once per node
            print(f"run.device={name} ignored with several processes: each uses the GPU of its local rank",
                  flush=True)
    else:
        index, where, fix = torch.device(name).index or 0, f"run.device={name}", f"use cuda:0..cuda:{count - 1}"
    if index >= count:
        raise RuntimeError(f"{where} needs GPU {index}, but {count} GPU(s) are visible; {fix} "
                           "or check CUDA_VISIBLE_DEVICES")
    return torch.device("cuda", index)


def start(device: str = "auto", amp: str = "off", threads: int | None = None, seed: int = 0) -> Runtime:
    """Resolve the device, join the process group under torchrun (NCCL on CUDA, gloo on CPU)
    and set the device's global switches. `threads` caps torch's CPU threads (runs sharing a
    machine)."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"optim.amp={amp!r}: use one of {', '.join(AMP_CHOICES)}")
    if threads:
        torch.set_num_threads(threads)
    launched = _launch_env()
    rank, local_rank, world = launched or (0, None, 1)
    where = resolve_device(device, local_rank)
    if where.type == "cuda":
        torch.cuda.set_device(where)
        torch.backends.cudnn.benchmark = True        # fixed clip shapes: autotuned kernels pay off
        if amp == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
            raise RuntimeError(f"optim.amp=bf16, but {torch.cuda.get_device_name(where)} has no bfloat16 "
                               "units; use optim.amp=fp16 (loss-scaled) or off")
    if amp == "auto":
        amp = native_amp(where)
    if where.type == "cuda" and amp == "off":        # CUDA only: IEEE float32, not torch's default TF32 convolutions
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif amp == "bf16" and where.type == "cpu" and not cpu_has_bf16() and rank == 0:
        print("optim.amp=bf16 on a CPU without bfloat16 units (AVX512-BF16 / AMX): emulated, several times "
              "slower than optim.amp=off or auto", flush=True)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if where.type == "cuda" else "gloo",
                                device_id=where if where.type == "cuda" else None)
        atexit.register(shutdown)
    if dist.is_initialized():
        rank = dist.get_rank()
    return Runtime(rank=rank, world_size=world, device=where, amp=amp, seed=seed)


def shutdown() -> None:
    """Leave the process group (at exit, or when a worker is done): after the models that use it.
    A DDP model still alive in a reference cycle (a traceback's frames) when its group is
    destroyed makes the process abort at exit ("terminate called without an active exception"),
    so cycles are collected first."""
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def from_config(cfg: Config) -> Runtime:
    """The runtime of run.device, optim.amp, run.threads and run.seed (optim.amp=auto resolved:
    Runtime.amp is what runs)."""
    return start(cfg.run.device, cfg.optim.amp, cfg.run.threads, cfg.run.seed)


def backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                  scaler: torch.amp.GradScaler | None = None, clip_grad: float | None = None) -> None:
    """Backward and optimizer step, through the fp16 loss scaler when there is one; gradients
    are unscaled before clipping so that `clip_grad` is a true norm."""
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if clip_grad:
        if scaler is not None:
            scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, clip_grad)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
