"""Presets, overrides and the messages for bad values."""
import pytest

from attnet.config import ConfigError, describe, load_config, presets
from attnet.data import DATASETS
from attnet.models import BACKBONES, STREAMS, TEMPORAL_MODELS


def test_paper_presets_follow_the_authors_recipe():
    cfg = load_config("hmdb51")
    assert (cfg.data.name, cfg.data.segments, cfg.data.size, cfg.data.batch_size, cfg.data.num_clips) == \
        ("hmdb51", 12, 224, 30, 10)
    assert (cfg.model.backbone, cfg.model.pretrained, cfg.model.hidden_size, cfg.model.num_layers) == \
        ("resnet34", "imagenet", 1024, 3)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.epochs) == \
        ("sgd", 1e-3, 0.9, 1e-5, 18)
    transfer = load_config("ucf101-transfer")
    assert transfer.data.name == "ucf101" and transfer.model.init_checkpoint.endswith("best.pt")
    assert {"synthetic", "synthetic-smoke", "hmdb51", "ucf101", "kinetics600", "hmdb51-transfer",
            "ucf101-transfer"} <= set(presets())


def test_the_frames_presets_read_the_authors_layout_with_no_quoted_override():
    cfg = load_config("hmdb51-frames", ["data.root=/data/Datasets"])
    assert (cfg.data.name, cfg.data.frame_template, cfg.data.frame_start) == ("list", "{}.jpg", 0)
    assert cfg.data.train_list == "{root}/list/hmdb_split{split}_train.txt"     # filled in by build_dataset
    assert (cfg.data.segments, cfg.data.batch_size, cfg.optim.epochs, cfg.data.val_fraction) == (12, 30, 18, 0.1)
    assert load_config("ucf101-frames").data.test_list == "{root}/list/ucf_split{split}_test.txt"
    assert load_config("hmdb51-frames", ["data.frame_template='{}.jpg'"]).data.frame_template == "{}.jpg"


def test_overrides_are_typed_and_applied():
    cfg = load_config("synthetic", ["model.streams=[sa]", "optim.epochs=5", "optim.lr=1e-2", "run.name=x",
                                    "model.pretrained=null"])
    assert cfg.model.streams == ["sa"] and cfg.optim.epochs == 5 and cfg.optim.lr == 0.01
    assert cfg.run_name == "x" and cfg.model.pretrained is None
    assert load_config("synthetic", ["model.streams=la", "model.ga_reg=false"]).run_name == \
        "synthetic_la_sru_noga_seed0"
    assert load_config("synthetic", ["optim.amp=off"]).optim.amp == "off"      # YAML 1.1 reads off as false


@pytest.mark.parametrize("override, message", [
    ("model.strams=[sa]", r"unknown config key 'model.strams' \(did you mean 'model.streams'\?\)"),
    ("optim.lr=fast", r"optim.lr: expected float, got 'fast'"),
    ("optim.epochs=0", r"optim.epochs: must be > 0, got 0"),
    ("optim.lr=-1", r"optim.lr: must be > 0"),
    ("model.streams=[]", r"model.streams: must be a non-empty subset"),
    ("model.streams=[gp, xx]", r"model.streams: must be a non-empty subset"),
    ("model.temporal=tcn", r"model.temporal: 'tcn' is not one of sru, lstm, gru, mean"),
    ("model.dropout=1.5", r"model.dropout: must be in \[0, 1\)"),
    ("data.segments=2.5", r"data.segments: expected int, got 2.5"),
    ("epochs", r"expected key=value"),
    ("data.frame_template={}.jpg", r"not valid YAML; quote it for YAML inside the shell's quotes: "
                                   r"\"data.frame_template='\{\}.jpg'\""),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("synthetic", [override])


def test_yaml_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  name: synthetic\n  size: [112\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("model:\n  hiden_size: 3\n")
    with pytest.raises(ConfigError, match=r"wrong.yaml: unknown config key 'model.hiden_size'"):
        load_config(wrong)
    with pytest.raises(ConfigError, match="unknown preset 'hmdb'"):
        load_config("hmdb")


def test_threads_are_positive():
    with pytest.raises(ConfigError, match=r"run.threads: must be > 0, got 0"):
        load_config("synthetic", ["run.threads=0"])


@pytest.mark.parametrize("override, registry", [
    ("model.backbone=resnet43", BACKBONES),
    ("model.temporal=sruu", TEMPORAL_MODELS),
    ("data.name=hmbd51", DATASETS),
    ("model.streams=[gp, sla]", STREAMS),
])
def test_misspelt_names_are_rejected_with_the_registry_list(override, registry):
    key, _, bad = override.partition("=")
    with pytest.raises(ConfigError) as err:
        load_config("synthetic-smoke", [override])
    message = str(err.value)
    assert message.startswith(key) and bad.strip("[]").split(", ")[-1] in message
    assert all(name in message for name in registry), (message, registry)


def test_help_lists_the_registry_names():
    lines = {line.split("=")[0].strip(): line for line in describe().splitlines()}
    assert lines["model.backbone"].endswith("(" + " | ".join(BACKBONES) + ")")
    assert lines["model.temporal"].endswith("(" + " | ".join(TEMPORAL_MODELS) + ")")
    assert lines["data.name"].endswith("(" + " | ".join(DATASETS) + ")")
    assert lines["model.streams"].endswith("(" + " | ".join(STREAMS) + ")")
