"""The runtime: device per launched rank (GPUs mocked; torchrun, srun and submitit variables set
here), precision and its label, scaler, seeds, the step."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from attnet.config import load_config
from attnet.engine import runtime
from attnet.engine.runtime import Runtime, resolve_device


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SUBMITIT_EXECUTOR", "SLURM_STEP_ID",
                "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_JOB_NODELIST", "SLURM_JOB_ID"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def gpus(monkeypatch):
    """Pretend `n` CUDA devices exist; returns the list of devices passed to set_device."""
    chosen = []

    def make(n: int, bf16: bool = True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
        monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
        return chosen
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True    # torch's defaults
    yield make
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def test_device_without_torchrun(gpus):
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match="run.device=cuda, but CUDA is not available"):
            resolve_device("cuda")
    gpus(2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)            # honoured in one process
    with pytest.raises(RuntimeError, match=r"cuda:2 needs GPU 2, but 2 GPU\(s\) are visible; use cuda:0..cuda:1"):
        resolve_device("cuda:2")


def test_device_under_torchrun_is_the_local_rank_gpu(gpus, capsys):
    gpus(4)
    assert resolve_device("auto", local_rank=3) == torch.device("cuda", 3)
    assert resolve_device("cuda", local_rank=2) == torch.device("cuda", 2)
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda", 1)   # not every rank on GPU 0
    assert resolve_device("cpu", local_rank=1) == torch.device("cpu")
    assert resolve_device("cuda:0", local_rank=0) == torch.device("cuda", 0)
    assert "run.device=cuda:0 ignored with several processes" in capsys.readouterr().out   # the other ranks ignore it
    with pytest.raises(RuntimeError, match=r"local rank 4 needs GPU 4, but 4 GPU\(s\) are visible; "
                                           r"start at most 4 per node"):
        resolve_device("auto", local_rank=4)
    gpus(1)                                  # srun --gpus-per-task=1: each task sees its own GPU as cuda:0
    assert resolve_device("auto", local_rank=3) == torch.device("cuda", 0)


def test_start_reads_the_launcher_and_sets_the_gpu(gpus, monkeypatch):
    chosen = gpus(2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "1")          # a world of one: no process group to join
    rt = runtime.start("cuda:0", amp="fp16", seed=5)
    assert (rt.device, rt.rank, rt.world_size, rt.precision, rt.seed) == (torch.device("cuda", 1), 1, 1, "fp16", 5)
    assert chosen == [torch.device("cuda", 1)] and torch.backends.cudnn.benchmark


def test_bf16_on_a_gpu_without_it_is_a_clear_error(gpus):
    gpus(1, bf16=False)
    with pytest.raises(RuntimeError, match="optim.amp=bf16, but Tesla V100 has no bfloat16 units; use optim.amp=fp16"):
        runtime.start("cuda", amp="bf16")
    assert runtime.start("cuda", amp="fp16").precision == "fp16"


@pytest.mark.parametrize("units, cpu_amp", [(True, "bf16"), (False, "off")])
def test_auto_precision_is_bf16_only_where_the_device_has_bfloat16_units(gpus, monkeypatch, capsys, units, cpu_amp):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: units)
    assert runtime.start("cpu", amp="auto").amp == cpu_amp
    runtime.start("cpu", amp="bf16")                         # asked for explicitly: kept, emulated or not
    assert ("emulated" in capsys.readouterr().out) == (not units)
    gpus(1, bf16=units)
    assert runtime.start("cuda", amp="auto").amp == ("bf16" if units else "fp16")   # fp16 loss-scaled on a V100


def test_from_config_and_thread_cap(smoke_cfg):
    before = torch.get_num_threads()
    try:
        rt = runtime.from_config(smoke_cfg("run.device=cpu", "optim.amp=bf16", "run.threads=1", "run.seed=7"))
        assert (rt.device, rt.amp, rt.seed, rt.world_size) == (torch.device("cpu"), "bf16", 7, 1)
        assert torch.get_num_threads() == 1
        runtime.start("cpu")                     # threads=None leaves the count alone
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="optim.amp='fp8'"):
        runtime.start("cpu", amp="fp8")


@pytest.mark.parametrize("amp, dtype, precision", [("bf16", torch.bfloat16, "bf16"), ("fp16", torch.float16, "fp16"),
                                                    ("off", torch.float32, "fp32")])
def test_autocast_on_cpu_and_scaler_only_for_fp16(amp, dtype, precision):
    rt = Runtime(amp=amp)
    layer = torch.nn.Linear(4, 3)
    with rt.autocast():
        assert layer(torch.randn(2, 4)).dtype == dtype
    assert layer(torch.randn(2, 4)).dtype == torch.float32                # only inside the context
    assert rt.precision == precision
    scaler = rt.grad_scaler()
    assert (scaler is not None) == (amp == "fp16")
    if scaler is not None:
        assert scaler.is_enabled() and scaler.get_scale() == 2.0 ** 16


def test_amp_off_on_a_gpu_is_ieee_fp32_and_the_record_never_says_fp32_for_tf32(gpus):
    gpus(1)
    gpu = Runtime(device=torch.device("cuda", 0), amp="off")
    assert gpu.precision == "tf32"                          # torch's default: TF32 convolutions
    torch.backends.cudnn.allow_tf32 = False
    assert gpu.precision == "fp32"
    torch.backends.cuda.matmul.allow_tf32 = True
    assert gpu.precision == "tf32"                          # TF32 matmuls alone are not fp32 either
    assert Runtime(device=torch.device("cpu"), amp="off").precision == "fp32"     # no TF32 on a CPU
    assert Runtime(device=torch.device("cuda", 0), amp="bf16").precision == "bf16"
    rt = runtime.start("cuda", amp="off")                   # turns both off: what runs is fp32
    assert rt.precision == "fp32"
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32


@pytest.mark.parametrize("nodelist, first", [("node[01-04],other", "node01"), ("gpu-a100-[3,5-7]", "gpu-a100-3"),
                                             ("single", "single"), ("a[2-3]b[09-10],c", "a2b09"), ("x1,y[1-2]", "x1")])
def test_first_host_of_a_slurm_node_list_without_scontrol(nodelist, first, monkeypatch):
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    assert runtime.first_host(nodelist) == first


_RESOLVE = """
import json, os, sys
from attnet.engine import runtime
base, found = dict(os.environ), []
for env in json.loads(sys.argv[1]):           # each as a process started with it would see it
    os.environ.clear()
    os.environ.update(base | env)
    launched = runtime._launch_env()
    found.append([launched, {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}])
print(json.dumps(found))
"""


def test_srun_tasks_resolve_rank_world_local_rank_and_master_from_slurm():
    slurm = {"SLURM_STEP_ID": "0", "SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
             "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "123456"}
    batch_shell = {k: v for k, v in slurm.items() if k != "SLURM_STEP_ID"}   # sbatch's own shell, no srun
    torchrun = slurm | {"LOCAL_RANK": "0", "RANK": "2", "WORLD_SIZE": "4"}   # torchrun inside srun
    clean = {k: v for k, v in os.environ.items()                             # this process's launcher left out
             if not k.startswith(("SLURM_", "SUBMITIT_")) and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK",
                                                                        "MASTER_ADDR", "MASTER_PORT")}
    submitit = {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "42", "SUBMITIT_LOCAL_NTASKS": "2",
                "SUBMITIT_LOCAL_JOB_NUM_NODES": "1", "SUBMITIT_LOCAL_NODEID": "0", "SUBMITIT_LOCAL_GLOBALID": "1",
                "SUBMITIT_LOCAL_LOCALID": "1"}                            # a task of submitit's local executor
    one_task = slurm | {"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0"}
    cases = [slurm, slurm | {"MASTER_PORT": "29500"}, batch_shell, torchrun, submitit, one_task]
    out = subprocess.run([sys.executable, "-c", _RESOLVE, json.dumps(cases)], capture_output=True, text=True, check=True,
                         env=clean | {"PATH": "/nonexistent"})                # no scontrol: the parser's host
    srun, kept, alone, under_torchrun, local, single = json.loads(out.stdout)
    assert srun == [[5, 1, 8], {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu07",
                                "MASTER_PORT": str(20000 + 123456 % 20000)}]
    assert kept[1]["MASTER_PORT"] == "29500"                                 # one the user set is kept
    assert alone == single == [None, dict.fromkeys(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))]
    assert under_torchrun[0] == [2, 0, 4]
    assert local[0] == [1, 1, 2] and local[1]["MASTER_ADDR"] == socket.gethostname()
    assert (local[1]["RANK"], local[1]["WORLD_SIZE"]) == ("1", "2") and 20000 <= int(local[1]["MASTER_PORT"]) <= 60000


def test_same_initial_weights_different_streams_per_rank():
    def built(rank):
        Runtime(rank=rank, world_size=2, seed=3).seed_model()
        return torch.nn.Linear(5, 5).weight

    assert torch.equal(built(0), built(1))

    def draws(rank, epoch):
        seed = Runtime(rank=rank, world_size=2, seed=3).seed_epoch(epoch)
        return seed, torch.rand(4)

    (s00, a), (s00_again, b), (s10, c), (s01, d) = draws(0, 0), draws(0, 0), draws(1, 0), draws(0, 1)
    assert s00 == s00_again and torch.equal(a, b)                         # a resumed epoch repeats
    assert len({s00, s10, s01}) == 3 and not torch.equal(a, c) and not torch.equal(a, d)
    assert draws(1, 0)[0] != draws(0, 1)[0] and draws(3, 0)[0] != draws(0, 3)[0]   # seed + rank + epoch would collide
    assert draws(0, 0)[0] != Runtime(seed=4).seed_epoch(0)


def _sgd_step(clip_grad, scaler):
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    before = layer.weight.detach().clone()
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    loss = (layer(torch.ones(4, 3)) * 10).sum()      # d loss / d weight = 40 everywhere, bias 40
    runtime.backward_step(loss, optimizer, scaler, clip_grad)
    return torch.cat([(layer.weight - before).flatten(), layer.bias.grad.flatten()])


@pytest.mark.parametrize("scaled", [False, True])
def test_backward_step_clips_the_unscaled_gradient(scaled):
    scaler = torch.amp.GradScaler("cpu") if scaled else None
    step = _sgd_step(None, scaler)
    assert torch.allclose(step[:6], torch.full((6,), -40.0))               # lr 1: the weight moves by -grad
    clipped = _sgd_step(0.5, torch.amp.GradScaler("cpu") if scaled else None)
    # all 8 gradients are 40, norm 40 * sqrt(8); clipped to total norm 0.5
    assert torch.allclose(clipped[:6], torch.full((6,), -0.5 / 8 ** 0.5), rtol=1e-4)
    assert torch.allclose(clipped[6:].norm() ** 2 + clipped[:6].norm() ** 2, torch.tensor(0.25), rtol=1e-4)
