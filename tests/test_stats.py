"""Intervals, paired differences and binomial errors against values worked out by hand."""
import math

import numpy as np
import pandas as pd
import pytest

from attnet import stats


@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995, 0.9999])
def test_t_quantile_has_the_closed_forms_of_one_and_two_degrees_of_freedom(p):
    # df = 1 is the Cauchy distribution: F^-1(p) = tan(pi (p - 1/2))
    assert stats.t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
    # df = 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2))  =>  t = (2p - 1) / sqrt(2 p (1 - p))
    assert stats.t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)
    assert stats.t_quantile(1 - p, 2) == pytest.approx(-stats.t_quantile(p, 2), rel=1e-12)


@pytest.mark.parametrize("p, df, expected", [
    (0.975, 3, 3.182446305), (0.975, 4, 2.776445105), (0.975, 5, 2.570581836), (0.975, 10, 2.228138852),
    (0.975, 30, 2.042272456), (0.995, 3, 5.840909310), (0.9, 4, 1.533206274), (0.975, 1000, 1.962339081),
])
def test_t_quantile_matches_published_tables(p, df, expected):
    assert stats.t_quantile(p, df) == pytest.approx(expected, abs=1e-8)


def test_t_quantile_tends_to_the_normal_quantile():
    assert stats.t_quantile(0.975, 1e7) == pytest.approx(1.959963985, abs=1e-6)


def test_t_quantile_rejects_bad_arguments():
    assert stats.t_quantile(0.5, 5) == 0.0
    with pytest.raises(ValueError, match="0 < p < 1"):
        stats.t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="df > 0"):
        stats.t_quantile(0.9, 0)


def test_t_interval_of_one_two_three():
    # mean 2; sd = sqrt(((1-2)^2 + 0 + (3-2)^2) / 2) = 1; t_{0.975, 2} = 4.302653;
    # half-width = 4.302653 * 1 / sqrt(3) = 2.484138
    interval = stats.t_interval([1, 2, 3])
    assert interval.mean == 2 and interval.sd == 1 and interval.n == 3
    assert interval.half_width == pytest.approx(4.302653 / math.sqrt(3), abs=1e-6)
    assert interval.low == pytest.approx(2 - 2.484138, abs=1e-6) and interval.high == pytest.approx(4.484138, abs=1e-6)
    assert str(interval) == "2.0 [-0.5, 4.5]"


def test_t_interval_with_one_value_has_no_width_and_nans_are_dropped():
    one = stats.t_interval([60.0, np.nan])
    assert one.mean == 60 and one.n == 1 and math.isnan(one.low) and str(one) == "60.0"
    assert stats.t_interval([]).n == 0 and stats.mean_text(stats.t_interval([])) == ""


def test_paired_difference_uses_only_common_seeds_and_calls_only_outside_zero():
    runs = pd.DataFrame({
        "config": ["full"] * 4 + ["a"] * 3 + ["b"] * 3 + ["c"],
        "seed":   [0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 0],
        "test.top1": [60, 50, 70, 99, 64, 55, 73, 50, 52, 58, 10],
        "status": ["done"] * 11,
    })
    table = stats.paired_differences(runs, reference="full").set_index("config")
    # a - full over seeds 0, 1, 2 (seed 3 only in full): 4, 5, 3 -> mean 4, sd 1,
    # half-width 4.302653 / sqrt(3) = 2.484138 -> [1.515862, 6.484138]: excludes 0
    assert table.loc["a", "pairs"] == 3 and table.loc["a", "diff"] == 4
    assert table.loc["a", "low"] == pytest.approx(1.515862, abs=1e-6) and table.loc["a", "call"] == "better"
    # b - full: -10, 2, -12 -> mean -20/3, sd sqrt((3.333^2 + 8.667^2 + 5.333^2) / 2) = 7.571878,
    # half-width 4.302653 * 7.571878 / sqrt(3) = 18.809...: contains 0
    assert table.loc["b", "diff"] == pytest.approx(-20 / 3)
    assert table.loc["b", "high"] == pytest.approx(-20 / 3 + 4.302653 * 7.571878 / math.sqrt(3), abs=1e-4)
    assert table.loc["b", "call"] == "no difference"
    assert table.loc["c", "pairs"] == 1 and table.loc["c", "call"] == "n < 2"
    assert table.loc["full", "call"] == "reference" and table.loc["full", "diff"] == 0


def test_a_consistent_loss_is_called_worse():
    diff = stats.t_interval([-3.0, -5.0, -4.0])
    assert diff.high < 0 and stats.call(diff) == "worse"


def test_a_failed_run_drops_its_seed_from_the_pairs():
    runs = pd.DataFrame({"config": ["full", "full", "a", "a"], "seed": [0, 1, 0, 1],
                         "test.top1": [50.0, 60.0, 52.0, np.nan], "status": ["done", "done", "done", "failed"]})
    row = stats.paired_differences(runs, reference="full").set_index("config").loc["a"]
    assert row["pairs"] == 1 and row["diff"] == 2


def test_binomial_standard_error_and_the_test_size_it_needs():
    # 128 videos at 50 %: 100 * sqrt(0.25 / 128) = 4.419 points
    assert stats.binomial_se(50.0, 128) == pytest.approx(100 * math.sqrt(0.25 / 128))
    assert stats.binomial_se(50.0, 128) == pytest.approx(4.4194, abs=1e-4)
    # SE <= 2 points: n >= 0.25 / 0.02^2 = 625 at 50 %; at 80 %: 0.16 / 0.0004 = 400
    assert stats.videos_for_se(50.0, 2.0) == 625 and stats.videos_for_se(80.0, 2.0) == 400
    assert stats.binomial_se(50.0, 625) == pytest.approx(2.0)


def test_bootstrap_interval_lies_inside_the_sample_range():
    values = [1.0, 2.0, 3.0, 10.0]
    boot = stats.bootstrap_interval(values, resamples=2000, seed=1)
    assert boot.mean == 4.0 and 1.0 <= boot.low < 4.0 < boot.high <= 10.0
    assert boot.half_width < stats.t_interval(values).half_width    # t widens for the uncertain sd
    assert stats.bootstrap_interval(values, resamples=2000, seed=1) == boot


def test_the_ablation_table_gives_intervals_paired_differences_calls_and_failures(tmp_path):
    from attnet.ablation import ablation_table
    from attnet.tables import write_table
    nan = np.nan
    runs = pd.DataFrame({
        "config": ["GP only"] * 3 + ["full model"] * 3 + ["SA + GP (fusion layer)"] * 2 + ["broken"],
        "seed": [0, 1, 2, 0, 1, 2, 0, 1, 0],
        "status": ["done"] * 8 + ["failed"], "error": [""] * 8 + ["ConfigError: model.streams: xx"],
        "test.top1": [50, 60, 55, 54, 65, 61, 60, 64, nan],
        "test.gp_top1": [50, 60, 55, 10, 20, 6, nan, nan, nan],
        "test.sa_top1": [nan, nan, nan, 55, 60, 62, 60, 64, nan],
        "test.num_videos": [128] * 8 + [nan],
    })
    table = ablation_table(runs).set_index("configuration")
    # GP only: mean 55, sd 5, half-width 4.302653 * 5 / sqrt(3) = 12.42 -> [42.6, 67.4]
    assert table.loc["GP only", "top-1"] == "55.0 [42.6, 67.4]" and table.loc["GP only", "GP"] == "55.0"
    # GP only - full model: -4, -5, -6 -> mean -5, sd 1, half-width 2.4842 -> [-7.5, -2.5]: worse
    assert table.loc["GP only", "Δ vs full model"] == "-5.0 [-7.5, -2.5]" and table.loc["GP only", "call"] == "worse"
    # SA + GP - full model over seeds 0, 1: 6, -1 -> mean 2.5, sd 4.9497, t_{0.975,1} = 12.7062,
    # half-width 12.7062 * 4.9497 / sqrt(2) = 44.47 -> [-42.0, 47.0]
    assert table.loc["SA + GP (fusion layer)", "Δ vs full model"] == "+2.5 [-42.0, +47.0]"
    assert table.loc["SA + GP (fusion layer)", "call"] == "no difference"
    assert table.loc["SA + GP (fusion layer)", "seeds"] == "2/2" and table.loc["SA + GP (fusion layer)", "GP"] == ""
    assert table.loc["full model", "call"] == "reference" and table.loc["full model", "SA"] == "59.0"
    assert table.loc["broken", "status"] == "failed: ConfigError: model.streams: xx"
    assert table.loc["broken", "seeds"] == "0/1" and table.loc["broken", "top-1"] == ""
    # the note: 128 videos at the full model's 60 %: 100 sqrt(0.6 * 0.4 / 128) = 4.33 points
    note = table.attrs["note"]
    assert "seeds [0, 1, 2]" in note and "95 % Student t-interval" in note and "128 videos" in note
    assert "4.3 points at 60 %" in note and "625 videos for 2 points" in note
    write_table(ablation_table(runs), tmp_path / "t")
    assert (tmp_path / "t.md").read_text().rstrip().endswith("625 videos for 2 points).")   # under the table


def test_without_the_reference_the_table_has_no_differences():
    from attnet.ablation import ablation_table
    runs = pd.DataFrame({"config": ["GP only", "GP only"], "seed": [0, 1], "status": ["done", "done"],
                         "error": ["", ""], "test.top1": [40.0, 50.0]})
    row = ablation_table(runs).iloc[0]
    assert row["Δ vs full model"] == "" and row["call"] == "" and row["top-1"].startswith("45.0 [")


def test_the_control_rows_get_their_own_run_names():
    from attnet.ablation import ABLATIONS, ablation_run_name
    names = {ablation_run_name("configs/p.yaml", spec, 0) for spec in ABLATIONS.values()}
    assert len(names) == len(ABLATIONS)
    assert {"p_gp+sa+la_sru_gadetach_seed0", "p_gp+oracle_sru_seed0", "p_gp+sa+la_sru_fp32_seed0"} <= names


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")   # the stand-in epoch takes no step
def test_configurations_with_the_same_seed_train_on_the_same_order(tmp_path, monkeypatch):
    """Paired seeds: the training order comes from the loader's own generator, seeded by the
    run's seed and the epoch, not from the global RNG that building different models consumes."""
    from attnet.config import load_config
    from attnet.engine import train

    orders = []      # one per epoch, in call order: the runs below go one after another

    def record_order(model, loader, *args, **kwargs):
        orders.append([list(batch) for batch in loader.batch_sampler])
        return {"loss": 0.0}

    monkeypatch.setattr(train, "train_one_epoch", record_order)
    for streams, seed in ((["gp"], 0), (["gp", "sa", "la"], 0), (["gp"], 1)):
        train.fit(load_config("synthetic-smoke", [f"data.root={tmp_path / 'data'}", f"run.out_dir={tmp_path / 'runs'}",
                                                  f"model.streams={streams}", f"run.seed={seed}", "optim.epochs=2",
                                                  "data.batch_size=4"]))
    gp, full, other_seed = orders[0], orders[2], orders[4]
    assert gp == full                                                           # same order for both models
    assert len(gp) == 6 and sorted(i for b in gp for i in b) == list(range(24))  # 4 classes x 6 videos, batches of 4
    assert [i for b in gp for i in b] != list(range(24))                        # shuffled
    assert gp != other_seed                                                     # the seed does change it
    assert orders[1] == orders[3] != gp                                         # epoch 2: a new order, still paired


def test_the_ablation_chart_draws_the_tables_interval():
    from attnet import viz
    runs = pd.DataFrame({"config": ["a", "a", "a", "b"], "test.top1": [10.0, 20.0, 15.0, 30.0], "status": ["done"] * 4})
    bars = viz.ablation_chart(runs).axes[0].lines
    # a: mean 15, sd 5, half-width 4.302653 * 5 / sqrt(3) = 12.4207 -> [2.5793, 27.4207]; b: one seed, no bar
    assert bars[0].get_xdata() == pytest.approx([15 - 12.4207, 15 + 12.4207], abs=1e-4)
    assert np.isnan(bars[1].get_xdata()).all()


def test_the_note_names_each_precision_and_a_precision_row_that_compares_one_with_itself():
    from attnet.ablation import ablation_table
    runs = pd.DataFrame({"config": ["full model"] * 2 + ["GP only"] * 2 + ["full model, fp32"] * 2, "seed": [0, 1] * 3,
                         "status": ["done"] * 6, "error": [""] * 6, "test.top1": [70.0, 80.0, 60, 61, 71, 79],
                         "precision": ["bf16"] * 4 + ["fp32"] * 2})
    note = ablation_table(runs).attrs["note"]
    assert " Precision: bf16 (4 runs), fp32 (2 runs: full model, fp32)." in note and "with itself" not in note
    runs.loc[0, "precision"] = None                     # a run recorded before final.json named its precision
    assert " Precision: bf16 (3 runs), fp32 (2 runs: full model, fp32)." in ablation_table(runs).attrs["note"]
    runs["precision"] = "fp32"                         # auto resolved to fp32 on a CPU without bfloat16 units
    assert ablation_table(runs).attrs["note"].count(" Precision: fp32 (6 runs). full model, fp32 trained in the full "
                                                    "model's precision (fp32): optim.amp=auto resolved to it where "
                                                    "they trained, so that row compares a precision with itself.") == 1


def test_the_table_shows_convergence_and_labels_numbers_selected_on_the_test_set():
    from attnet.ablation import ablation_table
    runs = pd.DataFrame({"config": ["full model"] * 2, "seed": [0, 1], "status": ["done", "done"], "error": ["", ""],
                         "test.top1": [70.0, 80.0], "train.top1": [93.5, 88.25], "selection": ["val", "val"]})
    table = ablation_table(runs)
    assert table.loc[0, "last-epoch train top-1 (min)"] == "88.2"     # the lowest seed's, not the mean 90.9
    assert "selected on the test set" not in table.attrs["note"]
    runs["selection"] = ["test", "val"]
    assert "1 of 2 runs chose their checkpoint on the test set" in ablation_table(runs).attrs["note"]
