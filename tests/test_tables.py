"""05's comparison table: the paper's and peers' numbers, then the kit's ablation rows."""
import pandas as pd

from attnet.tables import paper_vs_reproduced

PAPER = pd.DataFrame({"method": ["GLKA network", "TSN ResNet-50"], "dataset": ["HMDB51 split 1", "UCF101 split 1"],
                      "pretraining": ["Kinetics-600", "ImageNet"], "top1": ["", "83.03"],
                      "note": ["to fill from the paper, Table 5", "peer anchor"],
                      "source": ["Zheng et al.", "mmaction2"]})


def test_paper_rows_are_quoted_or_say_what_to_fill_and_the_ablation_rows_follow(tmp_path):
    ablation = tmp_path / "ablation_synthetic.csv"
    pd.DataFrame({"configuration": ["GP only", "full model"], "top-1": ["97.1 [95.0, 99.2]", "97.3 [94.8, 99.7]"],
                  "seeds": ["5/5", "5/5"]}).to_csv(ablation, index=False)
    table = paper_vs_reproduced(PAPER, ablation, "synthetic")
    assert table.to_dict("records") == [
        {"method": "GLKA network", "dataset": "HMDB51 split 1", "pretraining": "Kinetics-600", "top-1": "",
         "status": "to fill from the paper, Table 5", "source": "Zheng et al."},
        {"method": "TSN ResNet-50", "dataset": "UCF101 split 1", "pretraining": "ImageNet", "top-1": "83.03",
         "status": "quoted", "source": "mmaction2"},
        {"method": "attnet: GP only", "dataset": "synthetic", "pretraining": "", "top-1": "97.1 [95.0, 99.2]",
         "status": "reproduced here", "source": str(ablation)},
        {"method": "attnet: full model", "dataset": "synthetic", "pretraining": "", "top-1": "97.3 [94.8, 99.7]",
         "status": "reproduced here", "source": str(ablation)}]


def test_without_an_ablation_table_only_the_paper_rows(tmp_path):
    table = paper_vs_reproduced(PAPER, tmp_path / "none.csv", "synthetic")
    assert table["method"].tolist() == ["GLKA network", "TSN ResNet-50"]
