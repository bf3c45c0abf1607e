"""The repository stands alone: no tracked file sends a reader or a test outside the checkout.
Every relative path that climbs (`../name`) is resolved from the folder of the file that names it
and must stay inside the repository."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIMB = re.compile(r"(?<![\w./-])((?:\.\./)+)([\w][\w.-]*)")


def tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no list of tracked files")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / n for n in names.decode().split("\0") if n]


def outside(line: str, folder: Path) -> list[str]:
    """The climbing paths of `line` that, read from `folder`, leave the repository."""
    return [up + name for up, name in CLIMB.findall(line)
            if not (folder / up / name).resolve().is_relative_to(ROOT)]


def test_no_tracked_file_refers_outside_the_repository():
    hits = []
    for path in tracked_files():
        if not path.is_file() or path == Path(__file__).resolve():   # this file spells examples out
            continue
        text = path.read_bytes()
        if b"\0" in text[:1024]:        # binary (PNG, GIF, gzip)
            continue
        for number, line in enumerate(text.decode("utf-8", "replace").splitlines(), 1):
            if outside(line, path.parent):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not hits, "references outside the repository:\n" + "\n".join(hits)


def test_the_pattern_catches_what_it_must():
    docs, notebooks = ROOT / "docs", ROOT / "notebooks" / "params"
    assert outside("see `../elsewhere/METHOD.md`", ROOT) == ["../elsewhere"]
    assert outside("see `../../other/METHOD.md`", docs) == ["../../other"]
    assert outside('p = "../../elsewhere/keys.txt"', notebooks) == []               # notebooks/params -> the root
    assert outside('p = "../../../elsewhere/keys.txt"', notebooks) == ["../../../elsewhere"]
    assert outside("[README](../README.md) and ../attnet/config.py", docs) == []     # climbs, but stays inside
    assert outside("os.chdir('..'); a/../b; 1..3", docs) == []


def test_committed_notebooks_name_no_folder_of_the_machine_that_ran_them():
    made = {p.name: json.loads(p.read_text())["metadata"]["papermill"]
            for p in (ROOT / "results" / "notebooks").glob("*.ipynb")}
    assert made, "no executed notebooks under results/notebooks"
    assert {n: (m["input_path"], m["output_path"]) for n, m in made.items()} == \
        {n: (f"notebooks/{n}", f"results/notebooks/{n}") for n in made}
