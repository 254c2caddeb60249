"""The labelled feature table: labels that match the real media, a rebuild that matches the committed table.

Real MediaPipe on the real media of the development part; the evaluation part's labels are checked against the real
decode in test_split.py. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from smartsession.classify.model import CLASSIFIER_STATES
from smartsession.dataset import build, labels, media
from smartsession.vision.frames import read_video, video_info
from smartsession.vision.landmarks import FaceLandmarker

LABELS = labels.load_labels()


def test_every_labelled_source_is_known_media_with_a_matching_checksum():
    for entry in LABELS["sources"]:
        name = entry["name"]
        if entry["package"] == "scikit-image":
            assert name == "astronaut" and media.astronaut().shape == (512, 512, 3)
            continue
        files = media.ARCHIVES[entry["package"]].files
        assert name in files, f"{name} is labelled but media.py does not fetch it from {entry['package']}"
        digest = hashlib.sha256(labels.source_path(entry).read_bytes()).hexdigest()
        assert digest == files[name]


@pytest.mark.slow
@pytest.mark.parametrize("entry", [e for e in LABELS["sources"] if e["kind"] == "video"], ids=lambda e: e["name"])
def test_video_segments_cover_every_decoded_frame_once(entry):
    frames = sum(1 for _ in read_video(labels.source_path(entry)))
    assert entry["frames"] == frames
    covered = [i for seg in entry["segments"] for i in range(seg["start"], seg["end"] + 1)]
    assert covered == list(range(frames)), "segments must be in order, without gaps or overlaps"
    for seg in entry["segments"]:
        assert seg["label"] in (None, "away", *CLASSIFIER_STATES)
        assert seg["note"]
        assert seg.get("smile") in (None, True, False) and seg.get("cue") in (None, *labels.CUES)
    for span in entry.get("attention") or []:
        assert 0 <= span["start"] <= span["end"] < frames


@pytest.mark.slow
def test_away_ranges_really_have_no_face():
    """The no-face ranges hold no face for the landmarker or the small-face search (checked on a sample of frames)."""
    for entry in LABELS["sources"]:
        if entry["kind"] != "video":
            continue
        away = {i for seg in entry["segments"] if seg["label"] == "away" for i in range(seg["start"], seg["end"] + 1)}
        if not away:
            continue
        with FaceLandmarker(static_image_mode=True) as landmarker:
            for vf in read_video(labels.source_path(entry)):
                if vf.index in away and vf.index % 8 == 0:
                    assert not landmarker.detect(vf.rgb).face, f"{entry['name']} frame {vf.index} has a face"
    assert video_info(media.pyfeat_file("no_face.mp4"))[0] > 0


@pytest.mark.slow
def test_rebuild_from_real_media_matches_the_committed_table(rebuilt_table, committed_table, assert_same_table):
    assert_same_table(rebuilt_table, committed_table)


def test_classes_counts_and_people(committed_table):
    counts = build.counts(committed_table)
    assert list(counts.index) == list(CLASSIFIER_STATES)
    assert counts.loc["focused", "rows"] == 18 and counts.loc["focused", "people"] == 2
    assert counts.loc["happy", "rows"] == 240 and counts.loc["happy", "people"] == 8
    assert counts.loc["confused", "rows"] == 2 and counts.loc["confused", "people"] == 2
    assert committed_table.groupby("source").size().to_dict() == {
        "single_face.mp4": 62, "WolfgangLanger_Pexels.mp4": 189, "multi_face.jpg": 4, "0-f15-hao-ph.jpg": 1,
        "15-f13-anc-ph.jpg": 1, "45-m7-di-ph.jpg": 1, "single_face.jpg": 1, "astronaut": 1,
    }


def test_features_are_finite_and_move_the_right_way(committed_table):
    features = build.feature_columns(committed_table)
    assert np.isfinite(committed_table[features].to_numpy(dtype=float)).all()
    means = committed_table.groupby("label")[["lip_corner_lift", "mouthSmileLeft", "browDownLeft", "brow_eye"]].mean()
    assert means.loc["happy", "lip_corner_lift"] > means.loc["focused", "lip_corner_lift"] + 0.05
    assert means.loc["happy", "mouthSmileLeft"] > means.loc["focused", "mouthSmileLeft"] + 0.3
    assert means.loc["confused", "browDownLeft"] > means.loc["focused", "browDownLeft"]
    assert means.loc["confused", "brow_eye"] < means.loc["focused", "brow_eye"]


def test_attention_labels_are_well_formed():
    for entry in LABELS["sources"]:
        attention = entry.get("attention")
        if entry["kind"] == "video":
            for span in attention or []:
                assert span["attention"] in ("screen", "away") and span["note"] and span["start"] <= span["end"] < entry["frames"]
        else:
            assert attention in (None, "screen", "away")
            for face in entry.get("faces", []):
                assert face.get("attention") in (None, "screen", "away")


def test_committed_manifest_is_generated_from_the_committed_table(committed_table):
    text = build.MANIFEST_PATH.read_text()
    assert text == build.manifest_markdown(committed_table)
    for entry in LABELS["sources"]:
        if entry["package"] in media.ARCHIVES:
            assert media.ARCHIVES[entry["package"]].files[entry["name"]] in text
    for archive in media.ARCHIVES.values():
        assert archive.sha256 in text
    assert "public domain" in text and "PROXY" in text


def test_missing_table_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="01_build_dataset"):
        build.read_feature_table(tmp_path / "features.csv")


def test_docs_quote_the_committed_counts(committed_table):
    """docs/DATA.md's table of faces and people per class agrees with the committed table."""
    text = (Path(build.__file__).resolve().parents[2] / "docs" / "DATA.md").read_text()
    for label, row in build.counts(committed_table).iterrows():
        pattern = rf"^\| {label} \| {row['rows']} \| {row['people']} \|"
        assert re.search(pattern, text, flags=re.M), f"docs/DATA.md: update the {label} row to {dict(row)}"
