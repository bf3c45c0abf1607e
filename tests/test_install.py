"""The package works installed: its wheel, put into a folder outside the checkout, trains the
smoke preset from an empty folder (presets are package data; outputs go under the working folder)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_installed_wheel_trains_the_smoke_preset_from_an_empty_folder(tmp_path):
    source, wheels, target, work = (tmp_path / name for name in ("src", "wheels", "site", "work"))
    source.mkdir()
    work.mkdir()
    for name in ("pyproject.toml", "README.md"):           # a copy, so the build leaves the checkout untouched
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "attnet", source / "attnet", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], check=True)
    wheel = next(wheels.glob("attnet-*.whl"))
    subprocess.run(pip + ["install", "--no-deps", "--target", str(target), str(wheel)], check=True)

    code = "import sys, attnet; from attnet.cli import main; print('from', attnet.__file__); main(sys.argv[1:])"
    done = subprocess.run([sys.executable, "-c", code, "train", "--preset", "synthetic-smoke", "optim.epochs=1"],
                          cwd=work, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"from {target / 'attnet' / '__init__.py'}" in done.stdout       # the installed copy, not the checkout
    final = json.loads((work / "results/runs/synthetic-smoke_gp+sa+la_sru_seed0/final.json").read_text())
    assert final["test"]["num_videos"] == 8                                  # 4 classes x 2 test videos
    assert (work / "data/synthetic-smoke/test.txt").is_file()                # generated under the working folder
    assert not list((target / "attnet").rglob("*.pt"))                       # nothing written into the package
