"""Fault injection for the tests, outside the package: a Python started with this folder on
PYTHONPATH and ATTNET_CRASH_AT="<point>:<epoch>" SIGKILLs itself at that instant of the epoch
boundary, as a power cut or the OOM killer would. Points: after_best, after_checkpoint (best.pt /
last.pt of that epoch written), after_metrics (its metrics.csv row written).
ATTNET_RAISE_AT="<epoch>" raises a RuntimeError as that epoch's training starts instead (one
rank of a multi-process run failing alone)."""
import os

if os.environ.get("ATTNET_RAISE_AT"):
    from attnet.engine import train

    _train_one_epoch = train.train_one_epoch

    def train_one_epoch(*args, **kwargs):
        epoch = args[7] + 1
        if epoch == int(os.environ["ATTNET_RAISE_AT"]):
            raise RuntimeError(f"injected failure in epoch {epoch}")
        return _train_one_epoch(*args, **kwargs)

    train.train_one_epoch = train_one_epoch

if os.environ.get("ATTNET_CRASH_AT"):
    import signal
    from pathlib import Path

    from attnet.engine import train

    _point, _epoch = os.environ["ATTNET_CRASH_AT"].rsplit(":", 1)
    _save, _write = train.save_atomic, train.write_csv

    def _kill(point: str, epoch: int) -> None:
        if (point, epoch) == (_point, int(_epoch)):
            os.kill(os.getpid(), signal.SIGKILL)

    def save_atomic(state, path):
        _save(state, path)
        _kill({"best.pt": "after_best", "last.pt": "after_checkpoint"}.get(Path(path).name), state["epoch"] + 1)

    def write_csv(frame, path):
        _write(frame, path)
        if Path(path).name == "metrics.csv":
            _kill("after_metrics", len(frame))

    train.save_atomic, train.write_csv = save_atomic, write_csv
