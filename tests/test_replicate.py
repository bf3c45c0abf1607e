"""Two reproductions compared call by call (attnet.replicate), on hand-made runs."""
import json

import pandas as pd
import pytest

from attnet import machine, replicate


def runs(gp, full, la):
    return pd.DataFrame({"config": ["GP only"] * 3 + ["full model"] * 3 + ["LA only"] * 3, "seed": [0, 1, 2] * 3,
                         "status": ["done"] * 9, "error": [""] * 9, "test.top1": gp + full + la,
                         "test.num_videos": [640] * 9})


def test_calls_are_compared_row_by_row_and_a_flip_is_flagged():
    # A: GP - full = -4, -5, -6 -> [-7.5, -2.5] worse; LA - full = +1, -1, 0 -> no difference.
    a = runs([50, 60, 55], [54, 65, 61], [55, 64, 61])
    # B: other digits, GP - full = -3, -5, -7 -> mean -5, sd 2, half-width 4.97 -> [-10.0, -0.0]: still worse;
    # LA - full = +6, +5, +7 -> [+3.5, +8.5]: better, a flipped call.
    b = runs([51, 60, 54], [54, 65, 61], [60, 70, 68])
    table = replicate.compare_calls(a, b).set_index("configuration")
    assert list(table.index) == ["GP only", "full model", "LA only"]
    assert table.loc["GP only", "Δ A"] == "-5.0 [-7.5, -2.5]" and table.loc["GP only", "call B"] == "worse"
    assert table.loc["GP only", "same call"] == "yes" and table.loc["full model", "same call"] == "yes"
    assert table.loc["LA only", "call A"] == "no difference" and table.loc["LA only", "call B"] == "better"
    assert table.loc["LA only", "same call"] == "NO"


def test_a_configuration_missing_on_one_side_does_not_agree():
    a = runs([50, 60, 55], [54, 65, 61], [55, 64, 61])
    b = a[a["config"] != "LA only"]
    table = replicate.compare_calls(a, b).set_index("configuration")
    assert table.loc["LA only", "call B"] == "missing" and table.loc["LA only", "same call"] == "NO"


def test_the_command_writes_the_table_with_both_machines(tmp_path, monkeypatch):
    for name, frame in (("a", runs([50, 60, 55], [54, 65, 61], [55, 64, 61])),
                        ("b", runs([51, 60, 54], [54, 65, 61], [56, 64, 60]))):
        (tmp_path / name / "tables").mkdir(parents=True)
        frame.to_csv(tmp_path / name / "tables" / "ablation_runs_synthetic.csv", index=False)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    machine.write_machine(tmp_path / "b", "synthetic")
    assert json.loads((tmp_path / "b" / "machine_synthetic.json").read_text())["aten_cpu_capability"] == "avx2"
    replicate.main([str(tmp_path / "a"), str(tmp_path / "b")])
    text = (tmp_path / "a" / "tables" / "replication_synthetic.md").read_text()
    assert "3 of 3 calls agree" in text and "machine not recorded" in text and "ATEN_CPU_CAPABILITY=avx2" in text
    out = tmp_path / "elsewhere" / "epochs"
    replicate.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])   # the note's command makes it again
    assert f"--preset synthetic --out {out}`." in out.with_suffix(".md").read_text()


def test_a_folder_without_runs_is_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match="ablation_runs_synthetic.csv: no ablation runs; make them with"):
        replicate.load_runs_table(tmp_path, "synthetic")


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16 vaes

processor\t: 1
cpu family\t: 99
model name\t: another core
""".splitlines()


def test_the_machine_record_names_family_model_and_the_kernel_choosing_flags():
    info = machine.describe_machine(CPUINFO)
    assert (info["cpu"], info["cpu_family"], info["cpu_model"]) == ("AMD EPYC", 26, 2)   # the first block only
    assert info["isa"] == ["avx512_bf16", "avx512f", "avx2", "avx"]                     # no AMX on this one
    text = machine.machine_text(info)
    assert text.startswith("AMD EPYC (family 26, model 2), avx512_bf16/avx512f/avx2/avx, ")
    # a record written before these fields still reads
    assert machine.machine_text({"cpu": "AMD EPYC", "cores": 2}).startswith("AMD EPYC, 2 cores")
    assert "isa" not in machine.describe_machine([]) and "cpu_family" not in machine.describe_machine([])


def test_the_machine_record_names_the_gpus_their_libraries_and_the_decoder(monkeypatch):
    import shutil
    import subprocess

    import torch
    import torchcodec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"NVIDIA H100 80GB HBM3 #{i}")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: True)
    monkeypatch.setattr(torch.cuda.nccl, "version", lambda: (2, 27, 3))
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    real_run = subprocess.run

    def run(args, **kwargs):                  # nvidia-smi as on a GPU node; ffmpeg as installed here
        if args[0] == "nvidia-smi":
            return subprocess.CompletedProcess(args, 0, stdout="570.86.15\n570.86.15\n")
        return real_run(args, **kwargs)
    monkeypatch.setattr(subprocess, "run", run)
    info = machine.describe_machine(CPUINFO)
    assert info["gpus"] == ["NVIDIA H100 80GB HBM3 #0", "NVIDIA H100 80GB HBM3 #1"] and info["gpu_count"] == 2
    assert (info["cuda"], info["cudnn"], info["nccl"], info["driver"]) == ("12.8", 91002, "2.27.3", "570.86.15")
    assert info["torchcodec"] == torchcodec.__version__ and info["ffmpeg_major"] == torchcodec.ffmpeg_major_version
    assert ", 2x NVIDIA H100 80GB HBM3 #0 (CUDA 12.8, cuDNN 91002, driver 570.86.15), " in machine.machine_text(info)
