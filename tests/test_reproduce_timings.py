"""The timings table and the results index keep the command and commit behind every notebook,
also when a later `attnet reproduce --only ...` reran some of them."""
import pandas as pd

from attnet.reproduce import made_by, merge_timings, write_index


def row(notebook, seconds, command, commit):
    return {"notebook": notebook, "seconds": seconds, "command": command, "commit": commit}


def test_an_only_call_replaces_its_rows_and_keeps_the_others_in_notebook_order(tmp_path):
    path = tmp_path / "t.csv"
    full = "`attnet reproduce --preset synthetic`"
    pd.DataFrame([row("03_ablation", 4000.0, full, "aaa"), row("04_attention", 15.0, full, "aaa"),
                  row("05_results", 5.0, full, "aaa")]).to_csv(path, index=False)
    only = "`attnet reproduce --resume --only 06_transfer 04_attention`"
    table = merge_timings(path, [row("06_transfer", 2000.0, only, "bbb"), row("04_attention", 20.0, only, "bbb")])
    assert table["notebook"].tolist() == ["03_ablation", "04_attention", "05_results", "06_transfer"]
    assert table["commit"].tolist() == ["aaa", "bbb", "aaa", "bbb"]
    assert table["seconds"].tolist() == [4000.0, 20.0, 5.0, 2000.0]
    assert made_by(table) == (f"{full} at commit aaa (03_ablation, 05_results: 66.8 min); "
                              f"{only} at commit bbb (04_attention, 06_transfer: 33.7 min).")


def test_a_default_call_keeps_the_extras_it_did_not_run_and_drops_unknown_notebooks(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame([row("03_ablation", 4000.0, "`old`", "aaa"), row("06_transfer", 39.0, "`only`", "aaa"),
                  row("09_gone", 1.0, "`old`", "aaa")]).to_csv(path, index=False)
    table = merge_timings(path, [row("00_quickstart", 9.0, "`new`", "bbb"), row("03_ablation", 4100.0, "`new`", "bbb")])
    assert table.to_dict("records") == [row("00_quickstart", 9.0, "`new`", "bbb"), row("03_ablation", 4100.0, "`new`", "bbb"),
                                        row("06_transfer", 39.0, "`only`", "aaa")]


def test_a_table_from_before_the_command_column_reads_as_an_earlier_call(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"notebook": ["03_ablation"], "seconds": [60.0]}).to_csv(path, index=False)
    table = merge_timings(path, [row("05_results", 6.0, "`new`", "bbb")])
    assert made_by(table) == "an earlier call at commit unknown (03_ablation: 1.0 min); `new` at commit bbb (05_results: 0.1 min)."


def test_the_commit_is_dirty_for_code_changes_but_not_for_rewritten_results(tmp_path):
    import subprocess

    from attnet.files import git_commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "t.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    clean = git_commit(tmp_path, short=True, ignore="results")
    assert len(clean) >= 7 and "+" not in clean
    (tmp_path / "results" / "t.md").write_text("new\n")          # what reproduce writes
    assert git_commit(tmp_path, short=True, ignore="results") == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path, short=True, ignore="results") == clean + "+local changes"


def test_each_call_names_its_machine_and_rows_from_before_the_column_do_not(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame([row("03_ablation", 3600.0, "`full`", "aaa")]).to_csv(path, index=False)
    intel = {**row("06_transfer", 240.0, "`only`", "bbb"), "machine": "Intel Xeon (family 6, model 143)"}
    table = merge_timings(path, [intel])
    assert made_by(table) == ("`full` at commit aaa (03_ablation: 60.0 min); "
                              "`only` at commit bbb on Intel Xeon (family 6, model 143) (06_transfer: 4.0 min).")
    table.to_csv(path, index=False)                  # a later call on another machine keeps the 07 row's
    amd = {**row("03_ablation", 3000.0, "`full`", "ccc"), "machine": "AMD EPYC (family 26, model 2)"}
    again = merge_timings(path, [amd]).set_index("notebook")["machine"]
    assert again.to_dict() == {"03_ablation": "AMD EPYC (family 26, model 2)", "06_transfer": "Intel Xeon (family 6, model 143)"}


def test_the_index_lists_tables_and_figures_and_names_retrained_runs_only_where_there_are_some(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "figures").mkdir()
    (tmp_path / "tables" / "a.md").write_text("| x |\n|---|\n| 1 |\n")
    (tmp_path / "figures" / "f.png").write_bytes(b"")
    text = write_index(tmp_path, "`attnet reproduce` at abc").read_text()
    assert "## a\n\n| x |\n|---|\n| 1 |\n" in text and "- [f.png](figures/f.png)" in text
    assert "retrained/" not in text
    (tmp_path / "retrained" / "r").mkdir(parents=True)
    assert "`retrained/<name>/` holds runs that 04 trained again" in write_index(tmp_path, "x").read_text()
