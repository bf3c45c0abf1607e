from pathlib import Path

from attnet.reproduce import execute

ROOT = Path(__file__).resolve().parents[2]


def run_notebook(name: str, output: Path, parameters: dict) -> None:
    """notebooks/<name>.ipynb through the driver's papermill call, from the checkout."""
    execute(ROOT / "notebooks" / f"{name}.ipynb", output, parameters, ROOT)
