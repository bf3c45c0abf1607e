"""`python -m attnet.bench gpu --device cpu --quick`: the readiness report at toy sizes, every
section present with its figures (the figures themselves are never asserted)."""
import re

import pytest
import torch

from attnet.bench import main

NUMBER = r"\d+(?:\.\d+)?(?:e[-+]?\d+)?"


@pytest.mark.slow
def test_quick_cpu_report_has_every_section_with_numbers(tmp_path, capsys):
    out = tmp_path / "report.md"
    main(["gpu", "--device", "cpu", "--quick", "--out", str(out)])     # the paper's SRU, under CPU bf16 too
    text = out.read_text()
    assert text.strip() in capsys.readouterr().out                       # printed and written alike
    sections = re.split(r"^## ", text, flags=re.M)
    assert [s.split(".")[0] for s in sections[1:]] == ["1", "2", "3", "4", "5", "6", "7"]
    curves, mfu, loader, pipeline, decoding, fit, ddp = sections[1:]

    rows = re.findall(rf"^\| (\d+) \| ({NUMBER}) \| ({NUMBER}) \| [-+]{NUMBER} \|$", curves, flags=re.M)
    assert [int(r[0]) for r in rows] == list(range(1, 21))
    fp32 = [float(r[1]) for r in rows]
    bf16 = [float(r[2]) for r in rows]
    assert abs(fp32[0] - bf16[0]) < 0.1                   # same weights, same first batch: bf16 rounding only
    assert sum(fp32[-4:]) < sum(fp32[:4])                 # 20 steps over 4 batches: the loss goes down
    assert re.search(rf"- fp32: median step time {NUMBER} ms", curves)
    assert re.search(rf"- bf16: median step time {NUMBER} ms", curves)

    assert re.search(rf"one train step .*: {NUMBER} GFLOP", mfu)
    assert re.search(rf"measured bf16 peak .*: {NUMBER} TFLOP/s", mfu)
    assert re.search(rf"MFU {NUMBER} % of the measured peak, no datasheet peak for this device", mfu)

    assert [int(w) for w in re.findall(rf"^\| (\d+) \| {NUMBER} \| {NUMBER}x \|$", loader, flags=re.M)] == [0, 1]
    assert re.search(rf"consumes {NUMBER} clips/s", loader)

    assert re.search(rf"- 3 steps at batch 2, 1 workers, bf16 autocast: {NUMBER} clips/s, {NUMBER} ms a step", pipeline)
    waits = float(re.search(rf"waits for data ({NUMBER}) % of the time", pipeline).group(1))
    assert 0 <= waits <= 100 and re.search(rf"MFU {NUMBER} % of the measured peak", pipeline)

    rows = re.findall(rf"^\| (.+) \| (cpu|cuda) \| {NUMBER} \|$", decoding, flags=re.M)
    assert rows == [("H.264, keyframe every 12", "cpu"), ("JPEG frames", "cpu")]    # GPU decoding on CUDA only

    assert re.search(rf"fit, 1 epoch: {NUMBER} s, test top-1 {NUMBER} %", fit)
    assert "(equals fit's: yes)" in fit and "metrics.csv epochs [1, 2] (ok)" in fit
    expected = "skipped: " if torch.cuda.device_count() < 2 else "torchrun, 2 processes"
    assert expected in ddp


def test_datasheet_peak_by_device_name(monkeypatch):
    from attnet.bench import gpu
    for name, peak in [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12),
                       ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA A10", 125e12), ("Tesla T4", None)]:
        monkeypatch.setattr(gpu, "device_label", lambda device, name=name: name)
        assert gpu.datasheet_peak(torch.device("cuda")) == peak
    assert gpu.datasheet_peak(torch.device("cpu")) is None
