"""`python -m attnet.bench data`: the per-source table, and the node sizing it derives."""
import math
import re

import pytest

from attnet.bench.data import clips_needed, main

NUMBER = r"\d+(?:\.\d+)?"


def test_clips_an_h100_consumes_at_a_given_mfu():
    # 40 % of 989 TFLOP/s over 7.83 TFLOP a step: a step of 30 clips every 19.79 ms
    assert clips_needed(0.4) == pytest.approx(30 * 0.4 * 989 / 7.83)
    assert clips_needed(0.4) == pytest.approx(1515.7, abs=0.1)


@pytest.mark.slow
def test_sources_table_has_every_source_before_and_now(capsys):
    main(["--parts", "sources", "--videos", "1", "--batch", "1", "--rounds", "1", "--mfu", "0.15",
          "--cores-per-gpu", "4"])
    out = capsys.readouterr().out
    assert "consumes 568 clips/s; workers are capped at 3 of 4 cores per GPU" in out
    rows = re.findall(rf"^\| (.+?) \| ({NUMBER}) \| ({NUMBER}) \| ({NUMBER})x \| ({NUMBER}) \| (\d+) \| (\d+)% \|$",
                      out, flags=re.M)
    assert [r[0].split(" (")[0].split(",")[0] for r in rows] == ["H.264", "H.264", "MPEG-4 part 2 AVI",
                                                                 "JPEG frame folder", "decoded cache"]
    for _, before, now, ratio, cores, workers, fed in rows:
        assert float(ratio) == pytest.approx(float(now) / float(before), rel=0.05, abs=0.01)
        assert int(workers) == min(3, math.ceil(clips_needed(0.15) / float(now)))
