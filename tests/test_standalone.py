"""The repository stands alone: no tracked file sends a reader or a test outside the checkout."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A path out of the checkout ("../shared/...") or into the steering repository's shared/ folder.
OUTSIDE = re.compile(r"\.\./shared\b|\bshared/(METHOD|reference)\b|steering repo")


def tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no list of tracked files")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / n for n in names.decode().split("\0") if n]


def test_no_tracked_file_refers_outside_the_repository():
    hits = []
    for path in tracked_files():
        if not path.is_file() or path == Path(__file__).resolve():   # this file spells the patterns out
            continue
        text = path.read_bytes()
        if b"\0" in text[:1024]:        # binary (PNG, GIF, gzip)
            continue
        for number, line in enumerate(text.decode("utf-8", "replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not hits, "references outside the repository:\n" + "\n".join(hits)


def test_the_pattern_catches_what_it_must():
    assert OUTSIDE.search("see `shared/METHOD.md` of the steering repository")
    assert OUTSIDE.search('SHARED = ROOT.parent / "shared"; p = "../shared/reference/keys.txt"')
    assert OUTSIDE.search("(see shared/reference/authors_checkpoint_keys.txt)")
    assert not OUTSIDE.search("docs/METHOD.md and tests/fixtures/authors_checkpoint_keys.txt")
    assert not OUTSIDE.search("Bad-video counts in shared memory")
