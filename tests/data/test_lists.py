"""Official split files, read as distributed; bad lines name file and line."""

import pytest

from attnet.data import DataError, build_dataset
from attnet.data import lists
from attnet.data.datasets import validation

from .conftest import HMDB_CLIPS, authors_hmdb, write_text


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


# --- validation held out of the training list -----------------------------------------------
UCF_CLASSES = ["ApplyEyeMakeup", "Archery", "Basketball"]


def ucf_official(root, clips_per_group=(4, 3, 5, 2, 6, 4, 3, 5, 4, 2, 3, 4, 5, 3, 4, 6, 2, 3, 4, 5, 3, 4, 2, 5, 4)):
    """Split 1 as published: groups 1-7 in testlist01, 8-25 in trainlist01, c01.. per group."""
    write_text(root / "ucfTrainTestlist" / "classInd.txt", [f"{i + 1} {c}" for i, c in enumerate(UCF_CLASSES)])
    train, test = [], []
    for label, name in enumerate(UCF_CLASSES):
        for g, clips in enumerate(clips_per_group[label:] + clips_per_group[:label], start=1):
            for c in range(1, clips + 1):
                path = f"{name}/v_{name}_g{g:02d}_c{c:02d}.avi"
                (test if g <= 7 else train).append(path if g <= 7 else f"{path} {label + 1}")
    write_text(root / "ucfTrainTestlist" / "trainlist01.txt", train)
    write_text(root / "ucfTrainTestlist" / "testlist01.txt", test)
    return root


HMDB_SOURCES = ["April_09_brush_hair_u_nm_np1_ba_goo", "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med",
                "Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo", "Haarek_mmen_brush_hair_h_cm_np1_fr_goo",
                "Aerial_Cartwheel_Tutorial_By_Jujimufu_cartwheel_f_nm_np1_ri_med",
                "Bodenturnen_2004_cartwheel_f_cm_np1_le_med", "Cartwheel_Training_cartwheel_f_cm_np1_ba_bad",
                "Fellowship_5_cartwheel_f_cm_np1_fr_bad", "Girl_doing_cartwheels_cartwheel_u_nm_np1_ri_goo",
                "Dont_give_up_on_cartwheels_cartwheel_f_nm_np1_le_goo"]


def hmdb_official(root):
    """Two classes; each source video cut into 1-3 clips `<source>_<N>.avi`, tagged 1 (train),
    2 (test) or 0 (unused) per source video as the 70/30 splits do."""
    tags = {"brush_hair": "1121", "cartwheel": "112210"}
    for cls, sources in (("brush_hair", HMDB_SOURCES[:4]), ("cartwheel", HMDB_SOURCES[4:])):
        lines = [f"{src}_{n}.avi {tag}" for src, tag in zip(sources, tags[cls]) for n in range(len(src) % 3 + 1)]
        write_text(root / "testTrainMulti_7030_splits" / f"{cls}_test_split1.txt", lines)
    return root


def names(dataset):
    return [r.path.name for r in dataset.records]


def test_group_keys_by_hand():
    from pathlib import Path
    record = lambda name: lists.VideoRecord(Path("x") / name, 0)   # noqa: E731
    assert lists.ucf101_group(record("v_ApplyEyeMakeup_g08_c01.avi")) == "g08"
    assert lists.ucf101_group(record("v_YoYo_g25_c04.avi")) == "g25"
    assert lists.ucf101_group(record("odd_name.avi")) == "odd_name"
    # one source video, clips tagged with other viewpoints: one group
    assert lists.hmdb51_source(record("April_09_brush_hair_u_nm_np1_ba_goo_0.avi")) == "April_09_brush_hair"
    assert lists.hmdb51_source(record("April_09_brush_hair_u_nm_np1_fr_goo_1.avi")) == "April_09_brush_hair"
    assert lists.hmdb51_source(record("20060723sfjffangelina_cartwheel_f_cm_np1_ri_med_12.avi")) == \
        "20060723sfjffangelina_cartwheel"
    assert lists.hmdb51_source(record("clip_3.avi")) == "clip"                  # untagged: the trailing _N goes
    folder = lists.VideoRecord(Path("HMDB/x") / "Mr._Bean_wave_u_nm_np1_fr_goo_0", 0, 40)   # a frame folder
    assert lists.hmdb51_source(folder) == "Mr._Bean_wave"
    assert lists.clip_group(folder) == "Mr._Bean_wave"
    assert lists.clip_group(record("v_YoYo_g25_c04.avi")) == "g25"
    assert lists.clip_group(record("walk_3.mp4")) == str(Path("x") / "walk_3.mp4")   # other names: the clip alone


@pytest.mark.parametrize("name, make, group", [("ucf101", ucf_official, lists.ucf101_group),
                                               ("hmdb51", hmdb_official, lists.hmdb51_source)])
def test_validation_is_held_out_of_the_training_list_by_group(tmp_path, name, make, group):
    root = make(tmp_path / name)
    listed, _ = getattr(lists, name)(root, 1, "train")
    train = build_dataset(name, root, subset="train", val_fraction=0.25)
    val = build_dataset(name, root, subset="val", val_fraction=0.25)
    test = build_dataset(name, root, subset="test", val_fraction=0.25)
    assert val.records and train.records
    assert set(names(val)) <= {r.path.name for r in listed}                  # only from the training list
    assert not set(names(val)) & set(names(test))                           # never a test video
    assert sorted(names(train) + names(val)) == sorted(r.path.name for r in listed)   # a partition
    assert not set(names(train)) & set(names(val))
    assert not {(r.label, group(r)) for r in train.records} & {(r.label, group(r)) for r in val.records}
    # stratified: every class with two or more training groups gives validation videos
    groups = {}
    for r in listed:
        groups.setdefault(r.label, set()).add(group(r))
    assert {r.label for r in val.records} == {label for label, g in groups.items() if len(g) > 1}
    # deterministic: a second read gives the same split
    assert names(build_dataset(name, root, subset="val", val_fraction=0.25)) == names(val)


def test_ucf101_validation_size_follows_val_fraction(tmp_path):
    root = ucf_official(tmp_path / "ucf")
    listed, _ = lists.ucf101(root, 1, "train")
    for fraction in (0.1, 0.3):
        val = build_dataset("ucf101", root, subset="val", val_fraction=fraction)
        for label in range(3):
            in_class = sum(r.label == label for r in listed)
            got = sum(r.label == label for r in val.records)
            assert abs(got - fraction * in_class) <= 6 / 2         # within half the largest group (6 clips)


def test_val_fraction_zero_and_authors_protocol(tmp_path):
    root = hmdb_official(tmp_path / "hmdb")
    listed, _ = lists.hmdb51(root, 1, "train")
    assert names(build_dataset("hmdb51", root, subset="train", val_fraction=0)) == [r.path.name for r in listed]
    with pytest.raises(DataError, match=r"hmdb51 at .*: no validation list and data.val_fraction=0; set "
                                        r"data.val_fraction=0.1 to hold one out of the training list, or "
                                        r"data.select_on_test=true"):
        build_dataset("hmdb51", root, subset="val", val_fraction=0)
    # select_on_test: the whole training list trains, "val" is the test list
    test = build_dataset("hmdb51", root, subset="test")
    assert names(build_dataset("hmdb51", root, subset="val", select_on_test=True)) == names(test)
    assert names(build_dataset("hmdb51", root, subset="train", select_on_test=True)) == [r.path.name for r in listed]


# --- the same for `list` datasets: by name, HMDB51 source, UCF101 group or the clip alone ------
AUTHORS_LISTS = dict(train_list="{root}/list/hmdb_split{split}_train.txt", test_list="{root}/list/hmdb_split{split}_test.txt")


def test_a_list_of_hmdb51_clips_holds_out_whole_source_videos(tmp_path):
    root = authors_hmdb(tmp_path / "Datasets")
    assert validation("list", root) == "held out"
    val = build_dataset("list", root, subset="val", val_fraction=0.4, **AUTHORS_LISTS)
    train = build_dataset("list", root, subset="train", val_fraction=0.4, **AUTHORS_LISTS)
    # both clips of the April_09 source go, though their viewpoint tags differ (ba, fr)
    assert names(val) == ["April_09_brush_hair_u_nm_np1_ba_goo_0", "April_09_brush_hair_u_nm_np1_fr_goo_1",
                          "Haarek_mmen_brush_hair_h_cm_np1_fr_goo_0",
                          "Aerial_Cartwheel_Tutorial_By_Jujimufu_cartwheel_f_nm_np1_ri_med_0"]
    assert [r.num_frames for r in val.records] == [10, 11, 14, 10]           # the list's frame counts
    assert val.records[0].path == root / "HMDB" / "brush_hair" / "April_09_brush_hair_u_nm_np1_ba_goo_0"
    assert sorted(names(train) + names(val)) == sorted(c for cs in HMDB_CLIPS.values() for c in cs[:-1])


def test_a_list_of_ucf101_clips_holds_out_whole_groups(tmp_path):
    lines = [f"UCF101/{c}/v_{c}_g{g:02d}_c{k:02d} 20 {label}" for label, c in enumerate(["Archery", "YoYo"])
             for g in (8, 9, 10, 11) for k in range(1, 2 + g % 3)]
    write_text(tmp_path / "train.txt", lines)
    val = build_dataset("list", tmp_path, subset="val", val_fraction=0.25)
    assert names(val) == ["v_Archery_g10_c01", "v_Archery_g10_c02", "v_YoYo_g08_c01", "v_YoYo_g08_c02", "v_YoYo_g08_c03"]
    assert len(build_dataset("list", tmp_path, subset="train", val_fraction=0.25).records) == 18 - 5


def test_other_names_are_held_out_clip_by_clip_per_class_with_a_fixed_seed(tmp_path):
    write_text(tmp_path / "train.txt", [f"videos/{c}/clip{i}.mp4 {label}" for label, c in enumerate(["walk", "run"])
                                        for i in range(8)])
    val = build_dataset("list", tmp_path, subset="val", val_fraction=0.25)
    assert [str(r.path.relative_to(tmp_path)) for r in val.records] == \
        ["videos/walk/clip1.mp4", "videos/walk/clip4.mp4", "videos/run/clip0.mp4", "videos/run/clip1.mp4"]
    train = build_dataset("list", tmp_path, subset="train", val_fraction=0.25)
    assert len(train.records) == 12 and not {r.path for r in train.records} & {r.path for r in val.records}


def test_a_list_with_its_own_validation_list_or_none_or_the_test_list(tmp_path):
    write_text(tmp_path / "train.txt", [f"v/{i}.mp4 {i % 2}" for i in range(8)])
    write_text(tmp_path / "test.txt", ["v/t0.mp4 0", "v/t1.mp4 1"])
    assert validation("list", tmp_path, val_fraction=0) == "none"
    with pytest.raises(DataError, match=r"no validation list and data.val_fraction=0; set data.val_fraction=0.1 to "
                                        r"hold one out of the training list, data.val_list=<file>, or "):
        build_dataset("list", tmp_path, subset="val", val_fraction=0)
    assert len(build_dataset("list", tmp_path, subset="train", val_fraction=0).records) == 8
    # the authors' protocol: "val" is the test list, "train" the whole training list
    assert validation("list", tmp_path, select_on_test=True) == "test"
    assert names(build_dataset("list", tmp_path, subset="val", select_on_test=True)) == ["t0.mp4", "t1.mp4"]
    assert len(build_dataset("list", tmp_path, subset="train", select_on_test=True).records) == 8
    with pytest.raises(DataError, match=r"elsewhere.txt: validation list not found; fix data.val_list, or unset it"):
        build_dataset("list", tmp_path, subset="val", val_list=tmp_path / "elsewhere.txt")
    write_text(tmp_path / "val.txt", ["v/x.mp4 1"])                      # its own list: nothing held out
    assert validation("list", tmp_path, select_on_test=True) == "list"
    assert names(build_dataset("list", tmp_path, subset="val")) == ["x.mp4"]
    assert len(build_dataset("list", tmp_path, subset="train").records) == 8
    assert validation("synthetic", tmp_path / "none") == validation("kinetics600", tmp_path) == "list"
