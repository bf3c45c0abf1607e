"""Official split files, read as distributed; bad lines name file and line."""

import pytest

from attnet.data import DataError, build_dataset
from attnet.data import lists

from .conftest import write_text


def test_ucf101_labels_are_zero_based_and_tolerate_crlf_bom(ucf_root):
    records, classes = lists.ucf101(ucf_root, 1, "train")
    assert classes == ["ApplyEyeMakeup", "Archery", "Basketball"]
    assert [(r.path.relative_to(ucf_root).as_posix(), r.label) for r in records] == [
        ("UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0), ("UCF-101/Basketball/v_Basketball_g08_c01.avi", 2)]
    records, _ = lists.ucf101(ucf_root, 1, "test")
    assert [(r.path.name, r.label) for r in records] == [("v_Archery_g01_c01.avi", 1)]


def test_ucf101_label_disagreeing_with_folder(ucf_root):
    write_text(ucf_root / "ucfTrainTestlist" / "trainlist02.txt", ["Archery/v_Archery_g08_c01.avi 2", "Archery/x.avi 3"])
    with pytest.raises(DataError, match=r"trainlist02.txt:2: label '3' disagrees"):
        lists.ucf101(ucf_root, 2, "train")


def test_hmdb51_tags(hmdb_root):
    train, classes = lists.hmdb51(hmdb_root, 1, "train")
    test, _ = lists.hmdb51(hmdb_root, 1, "test")
    assert classes == ["brush_hair", "cartwheel"]
    assert [(r.path.relative_to(hmdb_root).as_posix(), r.label) for r in train] == [
        ("brush_hair/a.avi", 0), ("cartwheel/e.avi", 1), ("cartwheel/f.avi", 1)]
    assert [(r.path.name, r.label) for r in test] == [("b.avi", 0), ("d.avi", 1)]


def test_hmdb51_bad_tag(hmdb_root):
    write_text(hmdb_root / "testTrainMulti_7030_splits" / "cartwheel_test_split2.txt", ["d.avi 2", "e.avi 5"])
    write_text(hmdb_root / "testTrainMulti_7030_splits" / "brush_hair_test_split2.txt", ["a.avi 1"])
    with pytest.raises(DataError, match=r"cartwheel_test_split2.txt:2: expected '<video>.avi <0\|1\|2>'"):
        lists.hmdb51(hmdb_root, 2, "train")


def test_kinetics_csv_missing_clips_are_counted(tmp_path):
    root = tmp_path / "k400"
    header = "label,youtube_id,time_start,time_end,split"
    write_text(root / "train.csv", [header, "abseiling,aaa,14,24,train", '"air drumming",bbb,0,10,train',
                                    "abseiling,ccc,3,13,train"])
    (root / "train" / "abseiling").mkdir(parents=True)
    (root / "train" / "abseiling" / "aaa_000014_000024.mp4").write_bytes(b"")
    (root / "bbb_000000_000010.mp4").write_bytes(b"")               # flat layout works too
    records, classes, missing = lists.kinetics(root, "train")
    assert classes == ["abseiling", "air drumming"]
    assert [(r.path.name, r.label) for r in records] == [("aaa_000014_000024.mp4", 0), ("bbb_000000_000010.mp4", 1)]
    assert missing == ["ccc_000003_000013.mp4"]


def test_kinetics_unlabelled_test_csv_and_other_containers(tmp_path):
    write_text(tmp_path / "annotations" / "train.csv", ["label,youtube_id,time_start,time_end,split",
                                                        "abseiling,aaa,14,24,train", "zumba,zzz,1,11,train"])
    write_text(tmp_path / "annotations" / "test.csv", ["youtube_id,time_start,time_end,split",   # Kinetics-600 test
                                                       "ttt,5,15,test", "uuu,0,10,test"])
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "ttt_000005_000015.mkv").write_bytes(b"")
    records, classes, missing = lists.kinetics(tmp_path, "test")
    assert classes == ["abseiling", "zumba"]
    assert [(r.path.name, r.label) for r in records] == [("ttt_000005_000015.mkv", -1)]
    assert missing == ["uuu_000000_000010.mp4"]
    with pytest.raises(DataError, match=r"test.csv:2: training row without a label"):
        lists.kinetics(tmp_path, "train", tmp_path / "annotations" / "test.csv")


def test_build_dataset_reports_missing_kinetics_clips(tmp_path):
    write_text(tmp_path / "train.csv", ["label,youtube_id,time_start,time_end,split",
                                        "abseiling,aaa,14,24,train", "abseiling,bbb,0,10,train"])
    (tmp_path / "aaa_000014_000024.mp4").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"kinetics400 train: 1 clips listed but not found .*bbb_000000_000010.mp4"):
        ds = build_dataset("kinetics400", tmp_path, subset="train")
    assert len(ds) == 1 and ds.missing == ["bbb_000000_000010.mp4"]


def test_kinetics_val_label_must_be_a_training_class(tmp_path):
    header = "label,youtube_id,time_start,time_end,split"
    write_text(tmp_path / "train.csv", [header, "abseiling,aaa,14,24,train"])
    write_text(tmp_path / "validate.csv", [header, "zumba,zzz,1,11,val"])
    with pytest.raises(DataError, match=r"validate.csv:2: label 'zumba' is not one of the 1 training classes"):
        lists.kinetics(tmp_path, "val")


def test_generic_lists_with_spaces_and_frame_counts(tmp_path):
    write_text(tmp_path / "classes.txt", ["walk", "run"])
    write_text(tmp_path / "train.txt", ["HMDB/brush hair/clip 0 408 1", "videos/a b.mp4 0"])
    records, classes = lists.list_file(tmp_path, tmp_path / "train.txt")
    assert classes == ["walk", "run"]
    assert [(r.path.relative_to(tmp_path).as_posix(), r.num_frames, r.label) for r in records] == [
        ("HMDB/brush hair/clip 0", 408, 1), ("videos/a b.mp4", None, 0)]


@pytest.mark.parametrize("line, message", [
    ("videos/a.mp4", r"train.txt:2: expected 'relative/path label'"),
    ("videos/a.mp4 7", r"train.txt:2: label 7 is outside the 2 classes"),
    ("../../etc/passwd 0", r"train.txt:2: path '../../etc/passwd' escapes the dataset root"),
])
def test_generic_list_errors_name_file_and_line(tmp_path, line, message):
    write_text(tmp_path / "classes.txt", ["walk", "run"])
    write_text(tmp_path / "train.txt", ["videos/ok.mp4 1", line])
    with pytest.raises(DataError, match=message):
        lists.list_file(tmp_path, tmp_path / "train.txt")


def test_missing_root_and_split_file(tmp_path):
    with pytest.raises(DataError, match="dataset root not found"):
        build_dataset("ucf101", tmp_path / "nowhere")
    (tmp_path / "ucf").mkdir()
    with pytest.raises(DataError, match=r"classInd.txt: file not found"):
        build_dataset("ucf101", tmp_path / "ucf")
    with pytest.raises(ValueError, match="unknown dataset 'ucf'"):
        build_dataset("ucf", tmp_path)
