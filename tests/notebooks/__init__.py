import json
from pathlib import Path

from attnet.reproduce import execute

ROOT = Path(__file__).resolve().parents[2]


def run_notebook(name: str, output: Path, parameters: dict) -> None:
    """notebooks/<name>.ipynb through the driver's papermill call, from the checkout."""
    execute(ROOT / "notebooks" / f"{name}.ipynb", output, parameters, ROOT)


def outputs(path: Path) -> list[dict]:
    """Every output of an executed notebook's cells."""
    return [o for cell in json.loads(path.read_text())["cells"] for o in cell.get("outputs", [])]


def inline_images(path: Path) -> list[str]:
    """The base64 PNG of every figure an executed notebook shows in its cells."""
    return [o["data"]["image/png"] for o in outputs(path) if "image/png" in o.get("data", {})]


def kernel_warnings(path: Path) -> str:
    """The executed notebook's stderr where it holds a warning of the kernel or its logging, else ''."""
    text = "".join("".join(o.get("text", "")) for o in outputs(path) if o.get("name") == "stderr")
    return text if "WARNING" in text or "without encryption" in text else ""
