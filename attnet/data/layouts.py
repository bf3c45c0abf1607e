"""Where each dataset comes from and the tree `build_dataset` expects (nothing downloads here)."""


def _kinetics(title: str, classes: str, short: str) -> str:
    return f"""{title}
  download: https://github.com/cvdfoundation/kinetics-dataset  (CVDF mirror: {short} clip archives + annotations)
            https://deepmind.com/research/open-source/kinetics  (the publishers' page: annotation CSVs)
    annotations: train.csv, validate.csv (or val.csv), test.csv of Kinetics-{classes}
  <root>/
    train.csv, validate.csv, test.csv (or annotations/*.csv)   label,youtube_id,time_start,time_end,split
    any folders below root: <youtube_id>_<start:06d>_<end:06d>.mp4  (class folders or flat; .mkv/.webm also found)
  missing clips (removed from YouTube) are counted, listed by `attnet data check kinetics`, and left out
  use: build_dataset("kinetics{classes}", root, subset="train"|"val"|"test")"""

LAYOUTS = {
    "ucf101": """UCF101 (13,320 videos, 101 classes, 3 train/test splits)
  download: https://www.crcv.ucf.edu/data/UCF101.php
    UCF101.rar                              (videos)
    UCF101TrainTestSplits-RecognitionTask.zip   (split lists)
  <root>/
    ucfTrainTestlist/classInd.txt          "1 ApplyEyeMakeup" (1-based)
    ucfTrainTestlist/trainlist0{1,2,3}.txt "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    ucfTrainTestlist/testlist0{1,2,3}.txt  "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"
    UCF-101/<Class>/v_<Class>_gXX_cYY.avi
  use: build_dataset("ucf101", root, split=1, subset="train"|"test")""",
    "hmdb51": """HMDB51 (6,766 clips, 51 classes, 3 splits of 70 train / 30 test per class)
  download: https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/
    hmdb51_org.rar                          (one .rar of videos per class: unpack each)
    test_train_splits.rar                   (split files)
  <root>/
    testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt   "<video>.avi <tag>"  1 train, 2 test, 0 unused
    <class>/<video>.avi
  use: build_dataset("hmdb51", root, split=1, subset="train"|"test")""",
    "kinetics400": _kinetics("Kinetics-400 (~240k train / 20k val clips of 10 s, 400 classes)", "400", "k400"),
    "kinetics600": _kinetics("Kinetics-600 (~390k train / 30k val clips of 10 s, 600 classes; the authors' "
                             "pre-training set)", "600", "k600"),
    "list": """Generic list files (your own data, or pre-extracted frames)
  <root>/<list>.txt, one line a sample, paths relative to <root>:
    videos (mmaction2):      "relative/path/clip.mp4 <label>"
    frame folders (authors): "relative/path/folder <num_frames> <label>"   frames named by frame_template
  optional <list dir>/classes.txt: one class name a line, in label order
  no val.txt (nor data.val_list): data.val_fraction of the training list is held out (UCF101 groups and
  HMDB51 source videos kept whole, read from the names; other clips one by one per class)
  the authors' frame folders (HMDB/<class>/<clip>/0.jpg, list/hmdb_split1_train.txt): the hmdb51-frames preset
  use: build_dataset("list", root, list_file="<root>/train.txt", subset="train")""",
    "synthetic": """The embedded synthetic action dataset (8 motion classes, generated here, no download)
  attnet data synth --out data/synthetic
  <root>/ videos/<class>/<name>.mp4, boxes/<class>/<name>.npy, train.txt, val.txt, test.txt, classes.txt
  use: build_dataset("synthetic", root, subset="train"|"val"|"test")""",
}
LAYOUTS["kinetics"] = LAYOUTS["kinetics600"]
