"""Scoring on labelled real faces: attention and smiles as the whole analyser reads them, beside the plain rules.

Every face with an attention or expression label in ``labels.json`` is read by the :class:`Analyzer` (photos in
image mode, each group-photo face on its crop; videos in stream mode from their first frame, as live) and by the
baseline rules (``classify/baseline.py`` for attention, mean ``mouthSmile*`` >= 0.5 for a smile) on the same
landmarks. ``part`` picks the development or the evaluation part of the split in docs/DATA.md.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import pandas as pd

from smartsession.classify import baseline
from smartsession.classify.expression import SMILE
from smartsession.dataset import build, media

PARTS = ("development", "evaluation")
#: States that mean the analyser saw the person at the screen, and away from it; ``uncertain`` is no call.
AT_SCREEN, NOT_AT_SCREEN = frozenset({"focused", "happy", "confused"}), frozenset({"distracted", "away", "drowsy"})


def part_of(entry: dict) -> str:
    """The split part a label-file source belongs to (sources without one are development)."""
    return entry.get("part", "development")


def read_attention(state: str) -> str:
    """An analyser state as an attention reading: ``screen``, ``away`` or ``no call``."""
    return "screen" if state in AT_SCREEN else "away" if state in NOT_AT_SCREEN else "no call"


def _smile_truth(face: dict) -> float:
    """1.0 for a labelled smile, 0.0 for a labelled face without one, NaN when the face has no expression label."""
    if face.get("smile") is not None:
        return float(bool(face["smile"]))
    label = face.get("label")
    return math.nan if label not in ("focused", "happy", "confused") else float(label == "happy")


def _baseline_smile(features: dict) -> bool:
    return (features["mouthSmileLeft"] + features["mouthSmileRight"]) / 2 >= SMILE


def _record(entry: dict, face: dict, frames: str, frame: int, obs) -> dict:
    features = obs.features
    base = baseline.attention_of(features) if obs.face else "away"
    return {
        "part": part_of(entry), "source": entry["name"], "person": face.get("person"), "frames": frames,
        "frame": frame, "attention": face.get("attention"), "smile": _smile_truth(face),
        "state": obs.state, "expression": obs.expression, "reason": obs.reason,
        "baseline": "screen" if base == "attending" else "away",
        "baseline_smile": bool(obs.face and _baseline_smile(features)), "features": features,
    }


def _photo_faces(entry: dict) -> Iterator[dict]:
    for face in entry.get("faces") or [entry]:
        if face.get("person") and (face.get("attention") or not math.isnan(_smile_truth(face))):
            yield face


def _video_ranges(entry: dict) -> dict[int, dict]:
    """Frame index -> what is labelled on it (expression, attention) and the range it is shown under: the
    attention range where there is one, else the expression segment."""
    wanted: dict[int, dict] = {}
    for seg in entry.get("segments", []):
        if seg.get("label") in ("focused", "happy", "confused"):
            for i in range(seg["start"], seg["end"] + 1):
                wanted[i] = {"person": entry["person"], "label": seg["label"], "smile": seg.get("smile"),
                             "frames": f"{seg['start']}-{seg['end']}"}
    for r in entry.get("attention", []):
        for i in range(r["start"], r["end"] + 1):
            wanted.setdefault(i, {"person": entry["person"]})
            wanted[i].update(attention=r["attention"], frames=f"{r['start']}-{r['end']}")
    return wanted


def observe(part: str = "development", model=None) -> pd.DataFrame:
    """One row per labelled face of ``part``: its labels, the analyser's state and the baseline's readings.

    ``model`` as for :class:`Analyzer` (None: the shipped one). Columns: part, source, person, frames, frame,
    attention ("screen"/"away"/None), smile (1/0/NaN), state, expression, reason, baseline ("screen"/"away"),
    baseline_smile, features (the face's named features); then ``read`` (the state as attention), and the
    correctness columns (see :func:`with_scores`).
    """
    from smartsession.analysis import Analyzer
    from smartsession.vision.frames import read_video

    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    sources = [e for e in build.load_labels()["sources"] if part_of(e) == part and not e.get("duplicate_of")]
    rows = []
    with Analyzer(mode="image", model=model) as analyzer:
        for entry in sources:
            if entry["kind"] != "photo":
                continue
            faces = list(_photo_faces(entry))
            if not faces:
                continue
            rgb = build._rgb_image(entry["name"])
            for face in faces:
                image = rgb
                if face.get("box"):
                    x0, y0, x1, y1 = face["box"]
                    image = np.ascontiguousarray(rgb[y0:y1, x0:x1])
                rows.append(_record(entry, face, "photo", -1, analyzer.process(image, source=entry["name"])))
    for entry in sources:
        wanted = _video_ranges(entry) if entry["kind"] == "video" else {}
        if not wanted:
            continue
        with Analyzer(mode="stream", model=model) as analyzer:
            for vf in read_video(media.pyfeat_file(entry["name"])):
                if vf.index > max(wanted):
                    break
                obs = analyzer.process(vf.rgb, t=vf.t, source=entry["name"], frame_index=vf.index)
                if vf.index in wanted:
                    rows.append(_record(entry, wanted[vf.index], wanted[vf.index]["frames"], vf.index, obs))
    return with_scores(pd.DataFrame(rows))


def with_scores(observed: pd.DataFrame) -> pd.DataFrame:
    """Add ``read`` and the correctness columns: attention (analyser, baseline) and smile (analyser, baseline)."""
    out = observed.copy()
    out["read"] = out["state"].map(read_attention)
    has_attention = out["attention"].notna()
    out["attention_right"] = np.where(has_attention, out["read"] == out["attention"], np.nan)
    out["baseline_attention_right"] = np.where(has_attention, out["baseline"] == out["attention"], np.nan)
    has_smile = out["smile"].notna()
    out["smile_right"] = np.where(has_smile, (out["state"] == "happy") == (out["smile"] == 1), np.nan)
    out["baseline_smile_right"] = np.where(has_smile, out["baseline_smile"] == (out["smile"] == 1), np.nan)
    return out


def accuracy(observed: pd.DataFrame, column: str, n_boot: int = 2000, random_state: int = 0) -> dict:
    """Accuracy of a correctness column with a 95% Wilson interval over faces and a 95% bootstrap interval
    resampling whole people (frames of one video are not independent evidence)."""
    from scipy.stats import binomtest

    scored = observed[observed[column].notna()]
    right = scored[column].astype(bool)
    n, k = len(scored), int(right.sum())
    if n == 0:
        return {"right": 0, "faces": 0, "people": 0, "accuracy": math.nan, "wilson": (math.nan, math.nan),
                "by_person": (math.nan, math.nan)}
    wilson = binomtest(k, n).proportion_ci(method="wilson")
    rng = np.random.default_rng(random_state)
    people = scored["person"].to_numpy(dtype=object)
    groups = {p: right[people == p].to_numpy() for p in pd.unique(people)}
    names = list(groups)
    boot = []
    for _ in range(n_boot):
        pick = rng.choice(len(names), size=len(names), replace=True)
        values = np.concatenate([groups[names[i]] for i in pick])
        boot.append(values.mean())
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"right": k, "faces": n, "people": len(names), "accuracy": k / n,
            "wilson": (float(wilson.low), float(wilson.high)), "by_person": (float(lo), float(hi))}


def summary(observed: pd.DataFrame) -> pd.DataFrame:
    """Attention and smile accuracy of the analyser and of the baseline rules, with both intervals."""
    rows = []
    for what, column in (("attention", "attention_right"), ("smile", "smile_right")):
        for reader, col in (("analyser", column), ("baseline rule", f"baseline_{column}")):
            a = accuracy(observed, col)
            rows.append({"measure": what, "reader": reader, "right": a["right"], "faces": a["faces"],
                         "people": a["people"], "accuracy": round(a["accuracy"], 3),
                         "95% Wilson": f"{a['wilson'][0]:.3f}-{a['wilson'][1]:.3f}",
                         "95% by person": f"{a['by_person'][0]:.3f}-{a['by_person'][1]:.3f}"})
    return pd.DataFrame(rows)
