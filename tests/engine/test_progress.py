"""Progress reads its values (device tensors in training) only on the steps it shows."""
from attnet.engine.progress import Progress


class Reads:
    """A value that counts how often it is read, as .item() on a GPU tensor would sync."""

    def __init__(self) -> None:
        self.reads = 0

    def __float__(self) -> float:
        self.reads += 1
        return 1.5


def test_values_are_read_every_n_steps_and_at_the_last(capsys):
    value = Reads()
    progress = Progress(total=7, desc="epoch 1/1", every=3)
    shown = [progress.update(2, loss=value) for _ in range(7)]
    assert value.reads == 3                                      # steps 3, 6 and 7 (the last)
    assert [i + 1 for i, s in enumerate(shown) if s is not None] == [3, 6, 7]   # what it shows, for TensorBoard
    assert shown[2]["loss"] == 1.5 and shown[2]["clips/s"] > 0
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[2] for line in lines] == ["3/7", "6/7", "7/7"]
    assert all("loss=1.500" in line for line in lines)
    assert progress.close() > 0 and progress.clips == 14


def test_other_ranks_read_nothing(capsys):
    value = Reads()
    progress = Progress(total=4, desc="val", every=1, enabled=False)
    for _ in range(4):
        progress.update(1, loss=value)
    assert value.reads == 0 and capsys.readouterr().err == ""
