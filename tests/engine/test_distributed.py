"""Two gloo processes on CPU: identical weights after DDP steps, and a distributed evaluation
that equals the single-process one (odd test set: the sampler pads, nothing is counted twice)."""
import json
import os
import socket

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from attnet.config import load_config
from attnet.engine import distributed, evaluate, fit


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
            real = train_module.train_one_epoch

            def keep(net, *args, **kwargs):        # each rank's weights right after its last step
                row = real(net, *args, **kwargs)
                torch.save(net.module.state_dict(), f"{out}/rank{rank}.pt")
                return row
            train_module.train_one_epoch = keep
            fit(cfg)
        else:
            metrics = evaluate(cfg, f"{out}/ckpt.pt", scores_path=f"{out}/scores_ddp.csv")
            with open(f"{out}/metrics{rank}.json", "w") as f:
                json.dump(metrics, f)
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture
def odd_cfg(smoke_data, tmp_path):
    data = tmp_path / "odd"
    return [f"data.root={data}", f"run.out_dir={tmp_path / 'runs'}", "run.name=ddp", "optim.epochs=2", "data.batch_size=2",
            "data.synthetic={num_classes: 3, frames: 12, size: 64, videos_per_class: {train: 4, val: 1, test: 3}}"]


def test_ddp_ranks_agree_and_distributed_eval_equals_single_process(odd_cfg, tmp_path):
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
    final = json.loads((tmp_path / "runs" / "ddp" / "final.json").read_text())
    assert final["world_size"] == 2 and final["test"]["num_videos"] == 9

    torch.save({"model": r0}, f"{out}/ckpt.pt")
    mp.spawn(_worker, args=(2, _free_port(), odd_cfg, out, "eval"), nprocs=2, join=True)
    single = evaluate(load_config("synthetic-smoke", odd_cfg), f"{out}/ckpt.pt", scores_path=f"{out}/scores_one.csv")
    for rank in (0, 1):
        both = json.loads(open(f"{out}/metrics{rank}.json").read())
        assert both["num_videos"] == single["num_videos"] == 9
        assert both["confusion"] == single["confusion"]
        assert {k: v for k, v in both.items() if k != "confusion"} == \
            pytest.approx({k: v for k, v in single.items() if k != "confusion"})
    ddp, one = pd.read_csv(f"{out}/scores_ddp.csv"), pd.read_csv(f"{out}/scores_one.csv")
    assert len(ddp) == 4 * 9 and list(ddp["video"]) == list(one["video"])
    score_columns = [c for c in one.columns if c.startswith("s") and c[1:].isdigit()]
    assert ddp[score_columns].to_numpy() == pytest.approx(one[score_columns].to_numpy(), abs=1e-5)
