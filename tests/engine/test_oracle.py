"""The oracle stream end to end: datasets with boxes, training and testing with them."""
import json

import pandas as pd

from attnet.engine import fit


def test_smoke_run_with_the_oracle_stream(smoke_cfg):
    cfg = smoke_cfg("run.name=oracle", "optim.epochs=2", "data.num_clips=2")
    cfg.model.streams = ["gp", "oracle"]       # set directly: config validation of stream names is not this test's
    run = fit(cfg)
    metrics = pd.read_csv(run / "metrics.csv")
    assert {"loss_ce", "loss_ga_oracle", "train_oracle_top1", "val_oracle_top1"} <= set(metrics.columns)
    final = json.loads((run / "final.json").read_text())
    assert 0 <= final["test"]["oracle_top1"] <= 100
    assert set(pd.read_csv(run / "scores.csv.gz")["stream"]) == {"fused", "gp", "oracle"}
