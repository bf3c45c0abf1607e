"""`python -m attnet.bench model`: the step's figures and its per-operator CPU profile."""
import pytest

from attnet.bench.model import main, top_ops


def test_op_profile_of_a_matmul_step_names_the_matmul_first_and_shares_add_up():
    import torch
    a = torch.randn(512, 512)

    def step():
        (a @ a).relu_()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)    # with two, on a busy host relu_ waits at its barrier for a descheduled sibling
    try:
        ops = top_ops(step, top=50)
    finally:
        torch.set_num_threads(threads)
    assert ops[0][0] == "aten::mm" and ops[0][2] > 50          # the matmul dominates a matmul + relu
    assert "aten::relu_" in [name for name, _, _ in ops] or "aten::clamp_min_" in [name for name, _, _ in ops]
    assert 99.0 < sum(share for _, _, share in ops) <= 100.0 + 1e-6


def test_bench_model_prints_the_tiny_step_and_its_convolutions(capsys):
    main(["--backbone", "tiny", "--segments", "2", "--size", "32", "--batch", "2", "--classes", "3", "--hidden", "16",
          "--steps", "1", "--threads", "1", "--amp", "off", "--ops", "30"])
    out = capsys.readouterr().out
    assert "precision=fp32" in out and "median step" in out and "GFLOP" in out
    profile = out.split("self CPU time per operator")[1]
    assert "aten::convolution_backward" in profile and "aten::mkldnn_convolution" in profile


@pytest.mark.slow
def test_compare_compile_times_the_compiled_model_beside_the_eager_one(capsys, monkeypatch):
    """The plumbing of --compare-compile, through dynamo with its aot_eager backend: the inductor
    C++ build would take minutes here and its speed is the benchmark's to print, not a test's."""
    import functools

    import torch
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    main(["--backbone", "tiny", "--segments", "2", "--size", "32", "--batch", "2", "--classes", "3", "--hidden", "16",
          "--steps", "1", "--threads", "1", "--amp", "off", "--compare-compile"])
    out = capsys.readouterr().out
    assert "train  compiled median step" in out and "speed-up of torch.compile:" in out
    ratio = float(out.split("speed-up of torch.compile:")[1].split("x")[0])
    assert ratio > 0


def test_compare_compile_refuses_compile_on_both_sides():
    import pytest
    with pytest.raises(SystemExit, match="drop --compile"):
        main(["--compile", "--compare-compile"])
