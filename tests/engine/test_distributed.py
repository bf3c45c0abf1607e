"""Two gloo processes on CPU: the same initial weights but each rank its own frame offsets and
crops, identical weights after DDP steps, a distributed evaluation that equals the single-process
one (odd test set: the sampler pads, nothing is counted twice), rank 0's decisions shared (a run
that exists, a resume refused), and a process group left after the models that use it. The global
batch split over the ranks; srun tasks (SLURM variables set here) training one run, and one of
them failing alone ending both."""
import gc
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from torch.utils.data import TensorDataset

from attnet.config import load_config
from attnet.data import build_loader, datasets, synthetic
from attnet.engine import RunExists, distributed, evaluate, fit, runtime
from attnet.engine.build import build_model
from attnet.engine.train import device_batch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, overrides: list, out: str, task: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = load_config("synthetic-smoke", overrides)
    try:
        if task == "train":
            from attnet.engine import train as train_module
            draws = _record_draws(train_module)
            real = train_module.train_one_epoch

            def keep(net, *args, **kwargs):        # each rank's weights right after its last step
                draws["epoch"] = args[6]
                row = real(net, *args, **kwargs)
                torch.save(net.module.state_dict(), f"{out}/rank{rank}.pt")
                return row
            train_module.train_one_epoch = keep
            fit(cfg)
            with open(f"{out}/draws{rank}.json", "w") as f:
                json.dump(draws, f)
            try:
                fit(cfg)                           # the run exists: rank 0 says so to both
            except RunExists as err:
                open(f"{out}/exists{rank}", "w").write(str(err))
            if rank == 0:                          # unfinished again: resuming loads last.pt
                os.rename(f"{cfg.run.out_dir}/ddp/final.json", f"{out}/final.json")
            torch.distributed.barrier()
            try:                                   # a setting the checkpoint is built on: refused on both ranks
                fit(load_config("synthetic-smoke", overrides + ["run.resume=true", "model.hidden_size=24"]))
            except ValueError as err:
                open(f"{out}/refused{rank}", "w").write(str(err))
        else:
            _decide(rank, out, runtime.from_config(cfg))
            metrics = evaluate(cfg, f"{out}/ckpt.pt", scores_path=f"{out}/scores_ddp.csv")
            with open(f"{out}/metrics{rank}.json", "w") as f:
                json.dump(metrics, f)
    finally:
        runtime.shutdown()


def _decide(rank: int, out: str, rt) -> None:
    """distributed.on_main with a rank-dependent fn: only rank 0 runs it, every rank gets its
    outcome (an exception too)."""
    def refuse():
        open(f"{out}/asked{rank}", "w").close()
        raise RunExists(f"run of rank {rank} exists")
    try:
        distributed.on_main(refuse, rt)
    except RunExists as err:
        open(f"{out}/error{rank}", "w").write(str(err))
    open(f"{out}/value{rank}", "w").write(distributed.on_main(lambda: f"rank {rank} decided", rt))


def _record_draws(train_module) -> dict:
    """Patch this process to note the hash of the model as built (before DDP broadcasts rank 0's
    weights) and, per epoch, the TSN frame indices and crop offsets its training items draw."""
    from torchvision.transforms import v2
    draws = {"epoch": None, "init": None, "indices": [], "crops": []}
    build, sample, crop = train_module.build_model, datasets.train_indices, v2.RandomCrop.make_params

    def built(*args, **kwargs):
        model = build(*args, **kwargs)
        digest = hashlib.sha256()
        for value in model.state_dict().values():
            digest.update(value.cpu().contiguous().numpy().tobytes())
        draws["init"] = digest.hexdigest()
        return model

    def sampled(*args, **kwargs):
        indices = sample(*args, **kwargs)
        draws["indices"].append([draws["epoch"], indices.tolist()])
        return indices

    def cropped(self, flat_inputs):
        params = crop(self, flat_inputs)
        draws["crops"].append([draws["epoch"], params["top"], params["left"]])
        return params
    train_module.build_model, datasets.train_indices, v2.RandomCrop.make_params = built, sampled, cropped
    return draws


@pytest.fixture
def odd_cfg(smoke_data, tmp_path):
    data = tmp_path / "odd"
    return [f"data.root={data}", f"run.out_dir={tmp_path / 'runs'}", "run.name=ddp", "optim.epochs=2", "data.batch_size=2", "data.size=56",
            "data.synthetic={num_classes: 3, frames: 12, size: 64, videos_per_class: {train: 4, val: 1, test: 3}}"]


def test_ddp_ranks_agree_rank0_decides_and_distributed_eval_equals_single_process(odd_cfg, tmp_path):
    out = str(tmp_path)
    load_config("synthetic-smoke", odd_cfg)
    from attnet.data import synthetic
    synthetic.ensure(tmp_path / "odd", num_classes=3, frames=12, size=64,
                     videos_per_class={"train": 4, "val": 1, "test": 3})
    mp.spawn(_worker, args=(2, _free_port(), odd_cfg, out, "train"), nprocs=2, join=True)
    r0, r1 = torch.load(f"{out}/rank0.pt", weights_only=True), torch.load(f"{out}/rank1.pt", weights_only=True)
    initial = torch.load(tmp_path / "runs" / "ddp" / "checkpoints" / "last.pt", weights_only=True)["model"]
    # BatchNorm running statistics are per process between forwards (DDP broadcasts rank 0's
    # buffers at the next forward); the learned weights must be bit-identical.
    for key in (k for k in r0 if "running_" not in k and "num_batches" not in k):
        assert torch.equal(r0[key], r1[key]), key
        assert torch.equal(r0[key], initial[key]), key        # rank 0 saved the weights both hold
    d0, d1 = (json.loads(open(f"{out}/draws{rank}.json").read()) for rank in (0, 1))
    assert d0["init"] == d1["init"]                          # the model seed is the run seed on every rank
    for kind in ("indices", "crops"):                        # 2 epochs x 6 items per rank (12 videos / 2)
        assert len(d0[kind]) == len(d1[kind]) == 12
        for epoch in (0, 1):
            mine, theirs = ([d[1:] for d in draws[kind] if d[0] == epoch] for draws in (d0, d1))
            assert mine != theirs, (kind, epoch)             # each rank its own offsets and crops
    assert [d[1:] for d in d0["indices"] if d[0] == 0] != [d[1:] for d in d0["indices"] if d[0] == 1]
    for rank in (0, 1):
        assert "a run of this name exists" in (tmp_path / f"exists{rank}").read_text()
        assert "cannot resume with a different model.hidden_size" in (tmp_path / f"refused{rank}").read_text()
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["world_size"] == 2 and final["test"]["num_videos"] == 9
    events = sorted(p.parent.name for p in (tmp_path / "runs" / "ddp").rglob("events.out.tfevents.*"))
    assert events == ["epochs", "steps"]                     # TensorBoard: rank 0 alone writes

    torch.save({"model": r0}, f"{out}/ckpt.pt")
    mp.spawn(_worker, args=(2, _free_port(), odd_cfg, out, "eval"), nprocs=2, join=True)
    single = evaluate(load_config("synthetic-smoke", odd_cfg), f"{out}/ckpt.pt", scores_path=f"{out}/scores_one.csv")
    for rank in (0, 1):
        both = json.loads(open(f"{out}/metrics{rank}.json").read())
        assert both["num_videos"] == single["num_videos"] == 9
        assert both["confusion"] == single["confusion"]
        assert {k: v for k, v in both.items() if k != "confusion"} == \
            pytest.approx({k: v for k, v in single.items() if k != "confusion"})
    assert sorted(p.name for p in tmp_path.glob("asked*")) == ["asked0"]      # rank 1 never looked
    for rank in (0, 1):
        assert (tmp_path / f"error{rank}").read_text() == "run of rank 0 exists"
        assert (tmp_path / f"value{rank}").read_text() == "rank 0 decided"
    ddp, one = pd.read_csv(f"{out}/scores_ddp.csv"), pd.read_csv(f"{out}/scores_one.csv")
    assert len(ddp) == 4 * 9 and list(ddp["video"]) == list(one["video"])
    score_columns = [c for c in one.columns if c.startswith("s") and c[1:].isdigit()]
    assert ddp[score_columns].to_numpy() == pytest.approx(one[score_columns].to_numpy(), abs=1e-5)


def _cycle_free(call) -> bool:
    """Whether the locals of a frame that `call` fails in are freed by reference counting alone
    once the error is handled (no reference cycle keeps them until the GC runs)."""
    gc.disable()
    try:
        ref = None

        def caller():
            nonlocal ref
            model = torch.nn.Linear(2, 2)
            ref = weakref.ref(model)
            call()
        try:
            caller()
        except RunExists:
            pass
        return ref() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("rank", [0, 1])
def test_an_error_on_main_shares_leaves_no_cycle_holding_the_callers_model(rank, monkeypatch):
    # rank 0 raises its own error, rank 1 the one broadcast to it; either way the caller's model
    # (a DDP model in fit) must go with the handled error, before the process group is destroyed
    def refuse():
        raise RunExists("no")
    monkeypatch.setattr(distributed, "broadcast", lambda obj, info: obj if info.rank == 0 else (None, RunExists("no")))
    assert _cycle_free(lambda: distributed.on_main(refuse, distributed.DistInfo(rank=rank, world_size=2)))


def test_shutdown_frees_a_ddp_model_held_in_a_cycle_before_it_destroys_the_group():
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    gc.disable()
    try:
        net = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
        ref, loop = weakref.ref(net), [net]
        loop.append(loop)                      # alive until the GC runs
        del net, loop
        assert ref() is not None
        destroyed = []
        real = torch.distributed.destroy_process_group
        torch.distributed.destroy_process_group = lambda: (destroyed.append(ref() is None), real())
        try:
            runtime.shutdown()
        finally:
            torch.distributed.destroy_process_group = real
        assert destroyed == [True] and not torch.distributed.is_initialized()
        runtime.shutdown()                     # again, or without a group: nothing to do
    finally:
        gc.enable()
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _pieces_worker(rank: int, world: int, port: int, out: str) -> None:
    """One DDP step at the global batch through the trainer's pieces, then BatchNorm buffers that
    differ per rank broadcast, and a flag raised on rank 1 alone seen by both."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        rt = runtime.start("cpu", seed=0)
        batch = device_batch(load_config("synthetic-smoke", ["data.batch_size=8"]), rt.world_size)
        x, y = _global_batch()
        loader = build_loader(TensorDataset(x, y), batch, train=True, distributed=True, seed=0)
        clips, labels = next(iter(loader))
        model = _step_model()
        net = torch.nn.parallel.DistributedDataParallel(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        runtime.backward_step(torch.nn.functional.cross_entropy(net(clips), labels), optimizer)
        bn = torch.nn.BatchNorm1d(3)
        bn.running_mean.fill_(rank + 1.0)
        bn.running_var.fill_(10.0 * (rank + 1))
        bn.num_batches_tracked.fill_(rank + 7)
        distributed.broadcast_buffers(bn, rt)
        flag = distributed.any_rank(torch.tensor(rank == 1), rt)
        torch.save({"batch": batch, "seen": labels.numel(), "model": model.state_dict(), "bn": bn.state_dict(),
                    "flag": flag}, f"{out}/pieces{rank}.pt")
    finally:
        runtime.shutdown()


def _global_batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 6, generator=g), torch.randint(0, 5, (8,), generator=g)


def _step_model() -> torch.nn.Module:
    """A model without batch norm, from the same seed on every rank."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 7), torch.nn.ReLU(), torch.nn.Linear(7, 5))


def test_global_batch_step_equals_one_process_and_rank0_buffers_and_flags_are_shared(tmp_path):
    mp.spawn(_pieces_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"pieces{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert [r["batch"] for r in ranks] == [4, 4] and [r["seen"] for r in ranks] == [4, 4]   # 8 = 2 x 4
    x, y = _global_batch()
    model = _step_model()                     # one process, the whole global batch of 8
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    runtime.backward_step(torch.nn.functional.cross_entropy(model(x), y), optimizer)
    for key, value in model.state_dict().items():
        assert not torch.equal(value, _step_model().state_dict()[key]), key            # the step moved it
        for r in ranks:
            assert torch.allclose(r["model"][key], value, atol=1e-6), key
    for r in ranks:                           # rank 0's statistics on both
        assert r["bn"]["running_mean"].tolist() == [1.0] * 3 and r["bn"]["running_var"].tolist() == [10.0] * 3
        assert int(r["bn"]["num_batches_tracked"]) == 7
        assert r["flag"] is True              # raised on rank 1 alone


def test_a_batch_that_does_not_divide_over_the_processes_is_refused():
    cfg = load_config("synthetic-smoke", ["data.batch_size=30"])
    assert [device_batch(cfg, w) for w in (1, 2, 3, 5)] == [30, 15, 10, 6]
    with pytest.raises(ValueError, match=r"data.batch_size=30 is the global batch and does not divide over 4 processes; "
                                         r"pass a multiple of 4 \(e.g. data.batch_size=28\)"):
        device_batch(cfg, 4)


def _srun(tmp_path, overrides: list, port: int, faults: dict | None = None) -> list:
    """`attnet train` as two srun tasks on this machine (the SLURM variables set here); returns
    each task's (exit status, stderr). `faults`: rank -> ATTNET_RAISE_AT."""
    root = Path(__file__).resolve().parents[2]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SUBMITIT_"))
            and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    tasks = []
    for rank in (0, 1):
        env = base | {"SLURM_STEP_ID": "0", "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank), "SLURM_NTASKS": "2",
                      "SLURM_JOB_NODELIST": "127.0.0.1", "SLURM_JOB_ID": "7", "MASTER_PORT": str(port),
                      "OMP_NUM_THREADS": "1",
                      "PYTHONPATH": os.pathsep.join([str(root / "tests" / "faults"), str(root)])}
        if faults and rank in faults:
            env["ATTNET_RAISE_AT"] = str(faults[rank])
        tasks.append(subprocess.Popen([sys.executable, "-m", "attnet", "train", "--preset", "synthetic-smoke",
                                       *overrides], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    try:
        return [(task.returncode, err) for task in tasks for _, err in [task.communicate(timeout=120)]]
    finally:
        for task in tasks:
            if task.poll() is None:
                task.kill()


@pytest.fixture
def srun_cfg(smoke_data, tmp_path):
    return [f"data.root={smoke_data}", f"run.out_dir={tmp_path / 'runs'}", "run.name=srun", "run.device=cpu",
            "optim.epochs=1", "run.tensorboard=false"]


@pytest.mark.slow
def test_srun_tasks_train_one_run_and_a_resume_on_another_world_size_is_refused(srun_cfg, tmp_path):
    (rc0, err0), (rc1, err1) = _srun(tmp_path, srun_cfg, _free_port())
    assert (rc0, rc1) == (0, 0), err0 + err1
    run = tmp_path / "runs" / "srun"
    final = json.loads((run / "final.json").read_text())
    assert (final["world_size"], final["device_batch_size"], final["test"]["num_videos"]) == (2, 4, 8)
    assert yaml.safe_load((run / "config.yaml").read_text())["launch"] == {"world_size": 2, "device_batch_size": 4}
    alone = load_config("synthetic-smoke", srun_cfg + ["run.resume=true"])    # this process: world size 1
    with pytest.raises(ValueError, match=r"launch.world_size: 2 -> 1; launch.device_batch_size: 4 -> 8"):
        fit(alone)                                                           # finished, but not like this
    (run / "final.json").unlink()
    with pytest.raises(ValueError, match=r"trained by 2 process\(es\), resumed by 1: data.batch_size=8 is split over "
                                         r"the processes.*resume with 2 \(torchrun --nproc-per-node / srun --ntasks\)"):
        fit(alone)


@pytest.mark.slow
def test_an_error_on_one_rank_ends_every_rank_and_the_record_names_it(srun_cfg, tmp_path):
    (rc0, err0), (rc1, err1) = _srun(tmp_path, srun_cfg + ["optim.epochs=2"], _free_port(), faults={1: 1})
    assert rc0 != 0 and rc1 != 0
    assert "RuntimeError: injected failure in epoch 1" in err1
    error = (tmp_path / "runs" / "srun" / "error.txt").read_text()
    # written by rank 1, or over it by rank 0 when gloo saw rank 1 go first; either names rank 1
    assert re.fullmatch(r"(attnet.engine.distributed.RankFailed: )?rank 1: RuntimeError: injected failure in epoch 1"
                        r"( \(rank 0 stopped with it\))?", error.strip().splitlines()[-1]), error


def _eval_worker(rank: int, world: int, port: int, overrides: list, checkpoint: str, out: str) -> None:
    """attnet evaluate's call on two ranks; rank 1 cannot read the checkpoint and then lives on, as
    a rank does whose failure the network does not show the others (NCCL)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        evaluate(load_config("synthetic-smoke", overrides), checkpoint if rank == 0 else f"{out}/missing.pt")
    except distributed.RankFailed as err:
        open(f"{out}/raised{rank}", "w").write(str(err))
        time.sleep(30)                                 # alive: only the watchdog can end rank 0


@pytest.mark.slow
def test_an_evaluation_that_fails_on_one_rank_ends_every_rank(smoke_cfg, tmp_path):
    cfg = smoke_cfg()
    synthetic.ensure(cfg.data.root, **cfg.data.synthetic)
    checkpoint = tmp_path / "weights.pt"
    torch.save({"model": build_model(cfg, 4, torch.device("cpu")).state_dict()}, checkpoint)
    overrides = [f"data.root={cfg.data.root}", "data.workers=0"]
    context = mp.spawn(_eval_worker, args=(2, _free_port(), overrides, str(checkpoint), str(tmp_path)),
                       nprocs=2, join=False)
    rank0 = context.processes[0]
    try:
        rank0.join(60)
        assert rank0.exitcode == 1                     # ended in predict's gather, not left waiting there
        assert (tmp_path / "raised1").read_text().startswith("rank 1: CheckpointError: ")
        assert not (tmp_path / "raised0").exists()
    finally:
        for process in context.processes:
            process.kill()


def _hang_worker(rank: int, world: int, port: int, out: str) -> None:
    """Rank 1 fails and then lives on; rank 0 waits in a collective that rank 1 never joins."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    rt = runtime.start("cpu")
    try:
        with distributed.fail_together(rt, lambda text: open(f"{out}/record", "w").write(text), poll_s=0.2):
            if rank == 1:
                raise OSError("disk full")
            torch.distributed.barrier()
    except distributed.RankFailed as err:
        open(f"{out}/raised{rank}", "w").write(str(err))
        time.sleep(30)                                 # alive: only the watchdog can end rank 0


@pytest.mark.slow
def test_a_rank_waiting_in_a_collective_is_ended_by_the_watchdog(tmp_path):
    context = mp.spawn(_hang_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=False)
    rank0, rank1 = context.processes
    rank0.join(60)
    try:
        assert rank0.exitcode == 1                     # ended, not left in the barrier
        assert (tmp_path / "raised1").read_text() == "rank 1: OSError: disk full"
        assert not (tmp_path / "raised0").exists()
        assert (tmp_path / "record").read_text().splitlines()[-1] == "rank 1: OSError: disk full"
    finally:
        for process in context.processes:
            process.kill()


def test_a_rank_that_cannot_see_the_run_folder_stops_every_rank_with_one_line(tmp_path, monkeypatch):
    from attnet.engine import train as train_module
    shared = tmp_path / "run"
    shared.mkdir()
    (shared / ".shared").write_text("token of rank 0")
    monkeypatch.setattr(distributed, "on_main", lambda fn, info: "token of rank 0")   # what rank 0 wrote and said
    monkeypatch.setattr(distributed, "gather", lambda seen, info: [True, seen])      # as rank 1 of 2
    monkeypatch.setattr(train_module.time, "sleep", lambda s: None)
    rank1 = distributed.DistInfo(rank=1, world_size=2)
    train_module._check_shared(shared, rank1)                  # sees rank 0's file: nothing to say
    elsewhere = tmp_path / "node2" / "run"                     # the same run.out_dir on another node's disk
    with pytest.raises(RuntimeError, match=rf"^{elsewhere}: rank\(s\) 1 cannot see the run folder rank 0 writes; "
                                           "put run.out_dir on a file system every node shares$") as err:
        train_module._check_shared(elsewhere, rank1)
    assert err.value.raised_everywhere                          # every rank raises it: no rank is left waiting
