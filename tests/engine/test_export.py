"""`attnet export`: a finished run as a save_pretrained folder holding the tested weights, with a model card
of its config and test metrics; a folder that is not a finished run is one line naming the file."""
import json

import huggingface_hub
import pytest
import torch

from attnet import GLKANet
from attnet.cli import build_parser, main
from attnet.engine import fit
from attnet.engine.checkpoint import load


def logits(model):
    with torch.no_grad():
        return model.eval()(torch.randn(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(0))).logits


def test_export_holds_the_best_checkpoint_and_a_card_of_the_run(smoke_cfg, tmp_path, monkeypatch, capsys):
    run = fit(smoke_cfg("run.name=ex", "optim.epochs=1", "data.segments=2", "data.size=32", "data.resize=32",
                        "model.hidden_size=16", "model.num_layers=1"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "export"
    main(["export", str(run), "--to", str(out)])
    assert str(out) in capsys.readouterr().out
    best = load(run / "checkpoints" / "best.pt")
    model = GLKANet(4, backbone="tiny", hidden_size=16, num_layers=1, dropout=0.2)
    model.load_state_dict(best["model"])
    exported = GLKANet.from_pretrained(out)
    assert torch.equal(logits(exported), logits(model))
    config = json.loads((out / "config.json").read_text())
    assert config["pretrained"] is None and config["classes"] == best["classes"]

    final = json.loads((run / "final.json").read_text())
    card = (out / "README.md").read_text()
    assert "preset `synthetic-smoke`" in card
    assert f"| fused | {final['test']['top1']:.2f} | {final['test']['top5']:.2f} |" in card
    assert f"| sa | {final['test']['sa_top1']:.2f} | {final['test']['sa_top5']:.2f} |" in card
    assert f"test set of synthetic**: {final['test']['num_videos']} videos;" in card
    assert f"| commit | {final['git_commit'] or 'not recorded'} |" in card
    assert "selection: the epoch of best top-1 on the validation set" in card
    assert "checkpoints/best.pt, epoch 1 of 1: the weights the test metrics measure" in card

    (run / "checkpoints" / "best.pt").unlink()
    main(["export", str(run), "--to", str(tmp_path / "from-last")])
    assert "checkpoints/last.pt, epoch 1 of 1: best.pt is absent" in (tmp_path / "from-last" / "README.md").read_text()


def test_a_folder_that_is_no_finished_run_is_one_line(tmp_path):
    run, to = tmp_path / "run", ["--to", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match=r"^error: \S*run: not a run folder \(no config.yaml\); give the folder"):
        main(["export", str(run), *to])
    run.mkdir()
    (run / "config.yaml").write_text("preset: synthetic-smoke\n")
    with pytest.raises(SystemExit, match=r"^error: \S*final\.json: not found, the run did not finish; finish it") as err:
        main(["export", str(run), *to])
    assert "\n" not in str(err.value.code)
    (run / "final.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"^error: \S*best\.pt: not found \(nor last\.pt\); train the run again"):
        main(["export", str(run), *to])
    assert not (tmp_path / "out").exists()


def test_help_lists_export():
    words = " ".join(build_parser().format_help().split())      # whatever the terminal's width
    assert "export a finished run as a Hugging Face save_pretrained folder with a model card" in words
