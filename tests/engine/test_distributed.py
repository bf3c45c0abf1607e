"""Two gloo processes on CPU: the same initial weights but each rank its own frame offsets and
crops, identical weights after DDP steps, a distributed evaluation that equals the single-process
one (odd test set: the sampler pads, nothing is counted twice), rank 0's decisions shared (a run
that exists, a resume refused), and a process group left after the models that use it."""
import gc
import hashlib
import json
import os
import socket
import weakref

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from attnet.config import load_config
from attnet.data import datasets
from attnet.engine import RunExists, distributed, evaluate, fit, runtime


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
