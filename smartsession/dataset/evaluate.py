"""Scoring on labelled real faces: attention and smiles as the whole analyser reads them, beside the plain rules.

Every face with an attention or smile label in ``labels.json`` is read by the :class:`Analyzer` (photos in
image mode, each group-photo face on its crop; videos in stream mode from their first frame, as live) and by the
baseline rules (``classify/baseline.py`` for attention, mean ``mouthSmile*`` >= 0.5 for a smile) on the same
landmarks. ``part`` picks the development or the evaluation part of the split in docs/DATA.md: tune on the first,
only report the second.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from smartsession.classify import baseline
from smartsession.classify.expression import SMILE
from smartsession.dataset import labels

#: States that mean the analyser saw the person at the screen, and away from it; ``uncertain`` is no call.
AT_SCREEN, NOT_AT_SCREEN = frozenset({"focused", "happy", "confused"}), frozenset({"distracted", "away", "drowsy"})


def read_attention(state: str) -> str:
    """An analyser state as an attention reading: ``screen``, ``away`` or ``no call``."""
    return "screen" if state in AT_SCREEN else "away" if state in NOT_AT_SCREEN else "no call"


def _record(item: labels.LabelledItem, obs) -> dict:
    features = obs.features
    base = baseline.attention_of(features) if obs.face else "away"
    smile = (features["mouthSmileLeft"] + features["mouthSmileRight"]) / 2 if obs.face else 0.0
    return {
        "part": item.part, "source": item.source, "person": item.person, "kind": item.kind, "frame": item.index,
        "attention": item.attention, "smile": math.nan if item.smile is None else float(item.smile), "cue": item.cue,
        "state": obs.state, "expression": obs.expression, "reason": obs.reason,
        "baseline": "screen" if base == "attending" else "away", "baseline_smile": bool(smile >= SMILE),
        "features": features,
    }


def observe(part: str = "development", model=None) -> pd.DataFrame:
    """One row per labelled face of ``part`` that shows a person: its labels, the analyser's state and the
    baseline's readings.

    ``model`` as for :class:`Analyzer` (None: the shipped one). Columns: part, source, person, kind, frame (video
    frame, or face number in a photo), attention ("screen"/"away"/None), smile (1/0/NaN), cue, state, expression,
    reason, baseline ("screen"/"away"), baseline_smile, features (the face's named features), frames (the run of
    frames a video face belongs to, "photo" for photos); then ``read`` (the state as attention) and the
    correctness columns (see :func:`with_scores`).
    """
    from smartsession.analysis import Analyzer
    from smartsession.vision.frames import read_video

    entries = {e["name"]: e for e in labels.sources(part)}
    by_source: dict[str, list[labels.LabelledItem]] = {}
    for item in labels.items(part):
        if item.person:
            by_source.setdefault(item.source, []).append(item)
    rows = []
    with Analyzer(mode="image", model=model) as analyzer:
        for name, faces in by_source.items():
            if entries[name]["kind"] != "photo":
                continue
            rgb = labels.read_photo(entries[name])
            for item in faces:
                image = rgb
                if item.box is not None:
                    x0, y0, x1, y1 = item.box
                    image = np.ascontiguousarray(rgb[y0:y1, x0:x1])
                rows.append(_record(item, analyzer.process(image, source=name)))
    for name, frames in by_source.items():
        if entries[name]["kind"] != "video":
            continue
        wanted = {item.index: item for item in frames}
        with Analyzer(mode="stream", model=model) as analyzer:
            for vf in read_video(labels.source_path(entries[name])):
                if vf.index > max(wanted):
                    break
                obs = analyzer.process(vf.rgb, t=vf.t, source=name, frame_index=vf.index)
                if vf.index in wanted:
                    rows.append(_record(wanted[vf.index], obs))
    return with_scores(_with_runs(pd.DataFrame(rows)))


def _with_runs(observed: pd.DataFrame) -> pd.DataFrame:
    """Add ``frames``: for a video face, the run of consecutive frames with the same labels it belongs to."""
    out = observed.copy()
    runs = []
    for _, group in out.groupby(["source", "person"], sort=False):
        key = group["attention"].fillna("-") + "/" + group["smile"].fillna(-1).astype(str)
        new_run = (group["frame"].diff() != 1) | (key != key.shift())
        run_id = new_run.cumsum()
        for _, run in group.groupby(run_id):
            label = "photo" if run["kind"].iloc[0] == "photo" else f"{run['frame'].min()}-{run['frame'].max()}"
            runs.append(pd.Series(label, index=run.index))
    out["frames"] = pd.concat(runs) if runs else pd.Series(dtype=object)
    return out


def with_scores(observed: pd.DataFrame) -> pd.DataFrame:
    """Add ``read`` and the correctness columns: attention (analyser, baseline); smile as the analyser's expression
    reads it (``smile_right``), as its state shows it (``state_smile_right``: a smile at a phone is ``distracted``,
    and smoothing holds a state for a moment), and as the baseline rule reads it."""
    out = observed.copy()
    out["read"] = out["state"].map(read_attention)
    has_attention = out["attention"].notna()
    out["attention_right"] = np.where(has_attention, out["read"] == out["attention"], np.nan)
    out["baseline_attention_right"] = np.where(has_attention, out["baseline"] == out["attention"], np.nan)
    has_smile = out["smile"].notna()
    out["smile_right"] = np.where(has_smile, (out["expression"] == "happy") == (out["smile"] == 1), np.nan)
    out["state_smile_right"] = np.where(has_smile, (out["state"] == "happy") == (out["smile"] == 1), np.nan)
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


#: The figures :func:`summary` reports: (measure, reader, correctness column).
FIGURES = (
    ("attention", "analyser", "attention_right"),
    ("attention", "baseline rule", "baseline_attention_right"),
    ("smile", "analyser", "smile_right"),
    ("smile", "analyser state", "state_smile_right"),
    ("smile", "baseline rule", "baseline_smile_right"),
)


def summary(observed: pd.DataFrame) -> pd.DataFrame:
    """Attention and smile accuracy of the analyser and of the baseline rules, with both intervals.

    Smiles are scored twice for the analyser: as its expression reads them on each frame (``analyser``), and as
    its smoothed, attention-first state shows them (``analyser state``: only an attending face can be ``happy``).
    """
    rows = []
    for what, reader, col in FIGURES:
        a = accuracy(observed, col)
        rows.append({"measure": what, "reader": reader, "right": a["right"], "faces": a["faces"],
                     "people": a["people"], "accuracy": round(a["accuracy"], 3),
                     "95% Wilson": f"{a['wilson'][0]:.3f}-{a['wilson'][1]:.3f}",
                     "95% by person": f"{a['by_person'][0]:.3f}-{a['by_person'][1]:.3f}"})
    return pd.DataFrame(rows)


def by_source(observed: pd.DataFrame) -> pd.DataFrame:
    """Right / scored per source for every figure of :data:`FIGURES`: most faces of a part may come from a few
    videos, so a pooled figure alone hides which source carries it."""
    rows = []
    for source, group in observed.groupby("source", sort=False):
        row = {"source": source, "people": group["person"].nunique()}
        for what, reader, col in FIGURES:
            scored = group[col].dropna()
            row[f"{what}, {reader}"] = f"{int(scored.sum())}/{len(scored)}" if len(scored) else "-"
        rows.append(row)
    return pd.DataFrame(rows)
