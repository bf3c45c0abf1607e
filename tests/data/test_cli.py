"""`attnet data synth | check | layout`, called through main(argv)."""
import pytest

from attnet.data import cli

from .conftest import index_video, write_avi


def _synth(out, capsys):
    cli.main(["synth", "--out", str(out), "--classes", "2", "--train", "1", "--val", "2", "--test", "1",
              "--frames", "6", "--size", "48", "--distractors", "1"])
    assert "wrote 8 videos" in capsys.readouterr().out


def test_synth_then_check_lists_missing_and_unreadable_files(tmp_path, capsys):
    out = tmp_path / "syn"
    _synth(out, capsys)
    (out / "videos" / "move_left" / "move_left_0001.mp4").unlink()
    (out / "videos" / "move_right" / "move_right_0002.mp4").write_bytes(b"not a video")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["check", "list", "--root", str(out), "--list-file", str(out / "val.txt")])
    assert exit_.value.code == 1                                       # problems: not a success
    captured = capsys.readouterr()
    text = captured.out
    assert "val: 4 videos, 2 classes (per class min 2, median 2, max 2), 1 missing, 1 unreadable" in text
    assert "missing: " in text and "move_left_0001.mp4" in text
    assert "move_right_0002.mp4: unreadable or corrupt video" in text
    assert captured.err.startswith("error: 2 problems") and len(captured.err.strip().splitlines()) == 1


def test_check_decodes_by_default_and_fast_reads_headers_only(tmp_path, capsys):
    out = tmp_path / "syn"
    _synth(out, capsys)
    video = out / "videos" / "move_left" / "move_left_0001.mp4"
    data = bytearray(video.read_bytes())
    start = data.index(b"mdat") + 4                                  # header (moov) intact, frame data zeroed
    size = int.from_bytes(data[start - 8: start - 4], "big") - 8
    data[start: start + size] = bytes(size)
    video.write_bytes(bytes(data))
    (out / "videos" / "move_right" / "move_right_0002.mp4").write_bytes(b"")      # empty
    with pytest.raises(SystemExit) as exit_:
        cli.main(["check", "synthetic", "--root", str(out)])            # the config's dataset name works
    assert exit_.value.code == 1
    text = capsys.readouterr().out
    assert "val: 4 videos, 2 classes (per class min 2, median 2, max 2), 0 missing, 2 unreadable" in text
    assert "move_left_0001.mp4: cannot decode frames" in text
    with pytest.raises(SystemExit):
        cli.main(["check", "synthetic", "--root", str(out), "--fast"])
    text = capsys.readouterr().out
    assert "val: 4 videos, 2 classes (per class min 2, median 2, max 2), 0 missing, 1 unreadable" in text
    assert "move_right_0002.mp4: unreadable" in text and "move_left_0001" not in text


@pytest.mark.parametrize("dataset", ["ucf101", "hmdb51", "kinetics400", "kinetics600", "list", "synthetic"])
def test_check_accepts_every_dataset_name_of_the_config(dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["check", dataset, "--root", str(tmp_path / "none")])
    assert exit_.value.code == 1 and "dataset root not found" in capsys.readouterr().err   # not "invalid choice"


def test_check_official_layout_and_class_balance(ucf_root, capsys):
    write_avi(ucf_root / "UCF-101" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi", index_video(4))
    write_avi(ucf_root / "UCF-101" / "Basketball" / "v_Basketball_g08_c01.avi", index_video(4))
    write_avi(ucf_root / "UCF-101" / "Archery" / "v_Archery_g01_c01.avi", index_video(4))
    cli.main(["check", "ucf101", "--root", str(ucf_root)])
    text = capsys.readouterr().out
    assert "train: 2 videos, 3 classes (per class min 1, median 1, max 1), 0 missing, 0 unreadable" in text
    assert "classes without videos: Archery" in text                 # no Archery clip in trainlist01
    assert "test: 1 videos" in text and text.strip().endswith("ok")


@pytest.mark.parametrize("dataset, expected", [
    ("ucf101", ["ucfTrainTestlist/classInd.txt", "download: https://www.crcv.ucf.edu"]),
    ("hmdb51", ["testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt", "test_train_splits.rar"]),
    ("kinetics600", ["<youtube_id>_<start:06d>_<end:06d>.mp4", "Kinetics-600", "cvdfoundation"]),
    ("list", ['"relative/path/folder <num_frames> <label>"', '"relative/path/clip.mp4 <label>"']),
])
def test_layout_prints_tree_and_download_page(dataset, expected, capsys):
    cli.main(["layout", dataset])
    text = capsys.readouterr().out
    assert all(piece in text for piece in expected)


def test_errors_are_one_line_on_stderr(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["check", "ucf101", "--root", str(tmp_path / "none")])
    assert "dataset root not found" in capsys.readouterr().err
    (tmp_path / "hmdb").mkdir()
    with pytest.raises(SystemExit):
        cli.main(["check", "hmdb51", "--root", str(tmp_path / "hmdb")])
    err = capsys.readouterr().err
    assert "testTrainMulti_7030_splits: split folder not found" in err and len(err.strip().splitlines()) == 1


def test_synth_flat_light_writes_an_evenly_lit_dataset(tmp_path, capsys):
    import json
    import numpy as np
    from attnet.data import synthetic
    cli.main(["synth", "--out", str(tmp_path), "--classes", "2", "--train", "1", "--val", "1", "--test", "1",
              "--frames", "4", "--size", "48", "--flat-light"])
    assert json.loads((tmp_path / "meta.json").read_text())["lighting"] is False
    flat = synthetic.render(0, (0, 0, 0), frames=4, size=48, lighting=False)[1]
    assert np.array_equal(np.load(tmp_path / "boxes" / "move_right" / "move_right_0000.npy"), flat)
