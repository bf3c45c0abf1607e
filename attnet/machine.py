"""The machine record: what a run's or a reproduction's digits depend on (CPU, instruction sets,
library versions, kernel caps). Seeded CPU runs repeat bit for bit only on the same machine."""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

from attnet.files import write_text

# Instruction sets that choose other kernels (oneDNN's AMX and AVX-512 bf16 convolutions, x264's
# code paths). A CPU's name alone does not say them: two "AMD EPYC" of other families differ.
ISA_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2", "avx")


def cpu_facts(cpuinfo: list[str] | None = None) -> dict:
    """The CPU a run's digits depend on: its name, family and model number, and which of
    ISA_FLAGS it has (from /proc/cpuinfo where there is one, else the platform's name)."""
    fields = _first_cpu(_cpuinfo() if cpuinfo is None else cpuinfo)
    flags = set(fields.get("flags", "").split())
    facts = {"cpu": fields.get("model name") or platform.processor() or "unknown"}
    if "cpu family" in fields and "model" in fields:
        facts |= {"cpu_family": int(fields["cpu family"]), "cpu_model": int(fields["model"])}
    if flags:
        facts["isa"] = [f for f in ISA_FLAGS if f in flags]
    return facts


def cpu_label(facts: dict) -> str:
    """The CPU's name with its family and model number where known: what tells two machines apart."""
    family = f" (family {facts['cpu_family']}, model {facts['cpu_model']})" if "cpu_family" in facts else ""
    return f"{facts.get('cpu', '?')}{family}"


def _cpuinfo() -> list[str]:
    path = "/proc/cpuinfo"
    return open(path).read().splitlines() if os.path.isfile(path) else []


def _first_cpu(lines: list[str]) -> dict[str, str]:
    """`key: value` of /proc/cpuinfo's first processor block (every core of a VM reads the same)."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


# What changes the kernels a CPU run takes: the library versions and the instruction sets they
# may use (`ATEN_CPU_CAPABILITY` and `ONEDNN_MAX_CPU_ISA` cap them, as an older CPU would).
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS")


def gpu_facts() -> dict:
    """The GPUs and the libraries that decide a GPU run's digits: name and count, CUDA, cuDNN,
    NCCL and the driver (from nvidia-smi where there is one); {} without CUDA."""
    import torch
    if not torch.cuda.is_available():
        return {}
    count = torch.cuda.device_count()             # CUDA only from here
    nccl = torch.cuda.nccl.version() if torch.distributed.is_nccl_available() else None
    facts = {"gpus": [torch.cuda.get_device_name(i) for i in range(count)], "gpu_count": count,
             "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
             "nccl": ".".join(map(str, nccl)) if isinstance(nccl, tuple) else nccl}
    if shutil.which("nvidia-smi"):
        shown = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True)
        facts["driver"] = shown.stdout.split("\n")[0].strip() if shown.returncode == 0 else None
    return facts


def media_versions() -> dict:
    """torchcodec's version and the FFmpeg it decodes with (its major version, and the first line
    of `ffmpeg -version` where that program is installed): decoded frames may differ between them."""
    import torchcodec
    versions = {"torchcodec": torchcodec.__version__, "ffmpeg_major": torchcodec.ffmpeg_major_version}
    if shutil.which("ffmpeg"):
        shown = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True)
        versions["ffmpeg"] = shown.stdout.split("\n")[0] if shown.returncode == 0 else None
    return versions


def describe_machine(cpuinfo: list[str] | None = None) -> dict:
    """The facts that decide a run's digits: the CPU (cpu_facts: name, family, model number, the
    instruction sets that choose kernels), cores, library versions, kernel caps, and the GPUs
    with their libraries where there are some."""
    import numpy
    import torch
    return {**cpu_facts(cpuinfo), "cores": os.cpu_count(), "machine": platform.node(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "aten_capability": torch.backends.cpu.get_cpu_capability(), **media_versions(), **gpu_facts(),
            **{k.lower(): os.environ[k] for k in KERNEL_ENV if k in os.environ}}


def write_machine(results: str | Path, preset: str) -> Path:
    path = Path(results) / f"machine_{preset}.json"
    write_text(path, json.dumps(describe_machine(), indent=1) + "\n")
    return path


def machine_text(info: dict) -> str:
    caps = ", ".join(f"{k.upper()}={info[k.lower()]}" for k in KERNEL_ENV if k.lower() in info)
    isa = f", {'/'.join(info['isa']) or 'no AVX'}" if "isa" in info else ""
    gpus = (f", {info['gpu_count']}x {info['gpus'][0]} (CUDA {info.get('cuda')}, cuDNN {info.get('cudnn')}, "
            f"driver {info.get('driver', '?')})") if info.get("gpus") else ""
    return (f"{cpu_label(info)}{isa}, {info.get('cores', '?')} cores{gpus}, torch {info.get('torch', '?')}, "
            f"ATen kernels {info.get('aten_capability', '?')}" + (f", {caps}" if caps else ""))
