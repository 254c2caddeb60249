"""The by-eye labels of the real face media (``labels.json``) and their split into a development and an evaluation part.

The split is by source (one photo or video of one package) and was fixed on 2026-12-07, before the analyser was run on
any new source: tune thresholds and choose models on ``development`` only, report ``evaluation``, never tune on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from smartsession.dataset import media

LABELS_PATH = Path(__file__).with_name("labels.json")
PARTS = ("development", "evaluation")
#: Named reasons a face is not a smile, for the analyser's tests ("a tongue out must not read happy").
CUES = ("speaking", "surprise", "tongue_out", "grimace", "hand_on_chin")


def load_labels() -> dict:
    """The label file: for every source, its package, part, person (the cross-validation group) and labels."""
    return json.loads(LABELS_PATH.read_text())


def sources(part: str | None = None) -> list[dict]:
    """The label file's source entries, all of them or those of one part (``development`` or ``evaluation``)."""
    if part is not None and part not in PARTS:
        raise ValueError(f"unknown part {part!r}: use one of {', '.join(PARTS)}")
    return [e for e in load_labels()["sources"] if part is None or e["split"] == part]


def source_path(entry: dict) -> Path:
    """The cached, checksummed media file behind a source entry (fetched on first use)."""
    return media.media_file(entry["package"], entry["name"])


def read_photo(entry: dict) -> np.ndarray:
    """A photo source as an RGB array."""
    from smartsession.vision.frames import read_image

    if entry["package"] == "scikit-image":
        return media.astronaut()
    return read_image(source_path(entry))


def smile_of(item: dict) -> bool | None:
    """Whether a segment or face smiles: its ``smile`` field, else what its expression label implies."""
    if "smile" in item:
        return item["smile"]
    return {"happy": True, "focused": False, "confused": False}.get(item.get("label"))


@dataclass(frozen=True)
class LabelledItem:
    """One labelled face: a video frame, a photo, or one face (crop) of a group photo; nothing decoded yet."""

    source: str
    package: str
    part: str
    kind: str  # "photo" or "video"
    index: int  # the video frame, or the face's position in the photo's ``faces`` (0 for a single-face photo)
    box: tuple[int, int, int, int] | None  # crop of a group photo, pixels (x0, y0, x1, y1)
    person: str | None
    label: str | None  # expression class, "away" (no face) or None (left out of the classifier)
    attention: str | None  # "screen", "away" or None (ambiguous)
    smile: bool | None
    cue: str | None
    note: str


def items(part: str | None = None) -> Iterator[LabelledItem]:
    """Every face with at least one label, in label-file order; a duplicate clip's frames are left out."""
    for entry in sources(part):
        if entry.get("duplicate_of"):
            continue
        common = dict(source=entry["name"], package=entry["package"], part=entry["split"], kind=entry["kind"])
        if entry["kind"] == "video":
            attention = {i: span["attention"] for span in entry.get("attention") or []
                         for i in range(span["start"], span["end"] + 1)}
            for seg in entry["segments"]:
                for i in range(seg["start"], seg["end"] + 1):
                    item = LabelledItem(**common, index=i, box=None, person=entry["person"], label=seg["label"],
                                        attention=attention.get(i), smile=smile_of(seg), cue=seg.get("cue"),
                                        note=seg["note"])
                    if item.label or item.attention or item.smile is not None:
                        yield item
            continue
        faces = entry.get("faces") or [entry]
        for index, face in enumerate(faces):
            box = tuple(face["box"]) if face.get("box") else None
            if entry.get("faces") and box is None:
                continue  # a group-photo face with no crop is not usable
            item = LabelledItem(**common, index=index, box=box, person=face["person"], label=face.get("label"),
                                attention=face.get("attention"), smile=smile_of(face), cue=face.get("cue"),
                                note=face["note"])
            if item.label or item.attention or item.smile is not None:
                yield item
