"""python -m studies.attention_causes: run the study's notebook with papermill into studies/attention_causes/results/ (from the repository root)."""
from pathlib import Path

from studies.run import run_study

if __name__ == "__main__":
    run_study(Path(__file__).parent / "attention_causes.ipynb")
