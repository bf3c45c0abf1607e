"""`python -m attnet.bench run`: the phases of one real fit, and time attributed to the right one."""
import time

from attnet.bench.run import Profile, profile_fit


def test_nested_timers_count_once_each():
    prof = Profile()

    class Work:
        @staticmethod
        def inner():
            time.sleep(0.3)

        @staticmethod
        def outer():
            time.sleep(0.1)
            Work.inner()

    prof.wrap(Work, "inner", "decode")
    prof.wrap(Work, "outer", "transform")
    with prof.during("epoch 1"):
        Work.outer()
    s = prof.seconds["epoch 1"]
    assert s["decode"] >= 0.3 and 0.1 <= s["transform"] < 0.25     # outer minus the inner call (0.4 if counted twice)
    assert s["total"] >= s["decode"] + s["transform"]


def test_profile_has_every_phase_of_a_cached_run_and_decodes_only_once(tmp_path):
    overrides = [f"data.root={tmp_path / 'data'}", "optim.epochs=2", "data.cache=true"]
    prof, wall = profile_fit("synthetic-smoke", overrides, tmp_path / "runs")
    assert prof.order == ["build datasets", "epoch 1", "val 1", "epoch 2", "val 2", "test", "fit"]
    assert prof.seconds["epoch 1"]["forward"] > 0 and prof.seconds["epoch 1"]["backward+opt"] > 0
    assert "backward+opt" not in prof.seconds["test"] and prof.seconds["fit"]["write"] > 0
    assert 0 < prof.seconds["fit"]["total"] <= wall
    prof2, _ = profile_fit("synthetic-smoke", overrides, tmp_path / "runs2")     # the decoded cache is on disk now
    first, again = (sum(p.seconds[ph]["decode"] for ph in p.order if ph != "fit") for p in (prof, prof2))
    assert again < first / 3
