"""The attnet command end to end on the smoke preset."""
import json
import subprocess
import sys

import pytest

from attnet.cli import main
from attnet.results import load_runs


def test_train_evaluate_and_registry(tmp_path, capsys):
    common = [f"data.root={tmp_path / 'data'}", f"run.out_dir={tmp_path / 'runs'}", "optim.epochs=1"]
    main(["train", "--preset", "synthetic-smoke", *common, "run.name=cli"])
    run = tmp_path / "runs" / "cli"
    assert (run / "final.json").is_file() and (run / "config.yaml").is_file()
    capsys.readouterr()
    main(["evaluate", "--run", str(run), "--checkpoint", "last"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["num_videos"] == 8 and "confusion" not in printed
    assert (run / "scores_test_last.csv.gz").is_file()
    with pytest.raises(SystemExit, match=r"optim.epochs: must be > 0"):
        main(["train", "--preset", "synthetic-smoke", *common, "optim.epochs=0"])
    with pytest.raises(SystemExit, match=r"a run of this name exists"):
        main(["train", "--preset", "synthetic-smoke", *common, "run.name=cli"])
    main(["train", "--preset", "synthetic-smoke", *common, "run.name=cli", "--resume"])   # finished: returns
    # a failing run is recorded as failed, with its error
    with pytest.raises(SystemExit, match="exceeds the"):
        main(["train", "--preset", "synthetic-smoke", *common, "run.name=broken", "data.batch_size=1000"])
    runs = load_runs(tmp_path / "runs").set_index("run")
    assert runs.loc["cli", "status"] == "done" and runs.loc["broken", "status"] == "failed"
    assert "exceeds the" in runs.loc["broken", "error"]


def test_bad_data_root_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: .*nowhere: dataset root not found"):
        main(["train", "--preset", "hmdb51", f"data.root={tmp_path / 'nowhere'}", f"run.out_dir={tmp_path}",
              "model.pretrained=null"])


def test_help_lists_presets_and_python_m_works():
    out = subprocess.run([sys.executable, "-m", "attnet", "train", "--help"], capture_output=True, text=True, check=True)
    assert "synthetic-smoke" in out.stdout and "model.streams=['gp', 'sa', 'la']" in out.stdout


class _Payload:
    """A pickle whose loading would create `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_bad_checkpoints_give_one_line_naming_the_file(tmp_path):
    import torch
    common = [f"data.root={tmp_path / 'data'}", f"run.out_dir={tmp_path / 'runs'}", "optim.epochs=1", "run.name=ck"]
    main(["train", "--preset", "synthetic-smoke", *common])
    run = tmp_path / "runs" / "ck"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Payload(tmp_path / "pwned")}, evil)
    done = subprocess.run([sys.executable, "-m", "attnet", "evaluate", "--run", str(run), "--checkpoint", str(evil)],
                          capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) <= 3, done.stderr
    assert lines[-1] == (f"error: {evil}: not a plain checkpoint; attnet never unpickles code (it holds objects other "
                         "than tensors and plain data); pass another --checkpoint (best, last or a path)")
    assert "weights_only=False" not in done.stderr and not (tmp_path / "pwned").exists()
    (run / "final.json").unlink()                             # an unfinished run whose last.pt was cut short
    last = run / "checkpoints" / "last.pt"
    for broken, reason in ((last.read_bytes()[:1000], "truncated or corrupt checkpoint"),
                           (b"", "empty checkpoint file")):
        last.write_bytes(broken)
        with pytest.raises(SystemExit) as err:
            main(["train", "--preset", "synthetic-smoke", *common, "--resume"])
        text = str(err.value.code)
        assert text.startswith(f"error: {last}: {reason}") and "\n" not in text
        assert f"copy {run / 'checkpoints' / 'best.pt'} over it" in text and "run.overwrite=true" in text
