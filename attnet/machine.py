"""The machine record: what a run's or a reproduction's digits depend on (CPU, instruction sets,
library versions, kernel caps). Seeded CPU runs repeat bit for bit only on the same machine."""
from __future__ import annotations

import json
import os
import platform
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


def describe_machine(cpuinfo: list[str] | None = None) -> dict:
    """The facts that decide a CPU run's digits: the CPU (cpu_facts: name, family, model
    number, the instruction sets that choose kernels), cores, library versions, kernel caps."""
    import numpy
    import torch
    return {**cpu_facts(cpuinfo), "cores": os.cpu_count(), "machine": platform.node(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "aten_capability": torch.backends.cpu.get_cpu_capability(),
            **{k.lower(): os.environ[k] for k in KERNEL_ENV if k in os.environ}}


def write_machine(results: str | Path, preset: str) -> Path:
    path = Path(results) / f"machine_{preset}.json"
    write_text(path, json.dumps(describe_machine(), indent=1) + "\n")
    return path


def machine_text(info: dict) -> str:
    caps = ", ".join(f"{k.upper()}={info[k.lower()]}" for k in KERNEL_ENV if k.lower() in info)
    isa = f", {'/'.join(info['isa']) or 'no AVX'}" if "isa" in info else ""
    return (f"{cpu_label(info)}{isa}, {info.get('cores', '?')} cores, torch {info.get('torch', '?')}, "
            f"ATen kernels {info.get('aten_capability', '?')}" + (f", {caps}" if caps else ""))
