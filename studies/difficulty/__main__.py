"""python -m studies.difficulty: run the study's notebook with papermill into studies/difficulty/results/ (from the repository root)."""
from pathlib import Path

from studies.run import run_study

if __name__ == "__main__":
    run_study(Path(__file__).parent / "difficulty.ipynb")
