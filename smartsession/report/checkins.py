"""The students' own answers beside the camera measure: answers per segment, and how well the two agree.

Pure pandas. For "Where was your mind just now?" each answer is set against what the camera said of that student
in the ``window_s`` seconds before it: attending (focused, happy, confused) or not (distracted, drowsy, away);
uncertain and paused moments say nothing. The agreement is shown whatever it is, and only above a minimum group.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

#: States in which the camera counts a student as attending, and as not attending (uncertain: neither).
ATTENDING = ("focused", "happy", "confused")
NOT_ATTENDING = ("distracted", "drowsy", "away")
#: What each answer to the "mind" preset claims (option index -> attending?).
MIND_CLAIMS = {0: True, 1: False}
LABELS = ("attending", "not attending")


def answers_per_segment(checkins: pd.DataFrame, answers: pd.DataFrame) -> list[dict[str, Any]]:
    """Each check-in with its segment, question, the count per option and how many answered."""
    rows = []
    if checkins is None or checkins.empty:
        return rows
    for ck in checkins.itertuples():
        picked = answers[answers["checkin_id"] == ck.checkin_id]["option"] if len(answers) else pd.Series([], dtype=int)
        counts = [int((picked == i).sum()) for i in range(len(ck.options))]
        rows.append({"checkin_id": ck.checkin_id, "segment": ck.segment, "question": ck.question,
                     "kind": ck.kind, "options": list(ck.options), "counts": counts, "answered": int(sum(counts)),
                     "asked": float(ck.asked)})
    return rows


def camera_before(states: pd.DataFrame, answers: pd.DataFrame, window_s: float) -> pd.DataFrame:
    """Per answer (checkin_id, student_id): the number of attending and not-attending states the student sent
    in the ``window_s`` seconds (hub receive time) before answering. ``states`` needs student_id, received,
    state and paused."""
    cols = ["checkin_id", "student_id", "attending", "not_attending"]
    if answers is None or answers.empty or states is None or states.empty:
        return pd.DataFrame(columns=cols)
    st = states[~states["paused"].astype(bool)][["student_id", "received", "state"]]
    merged = answers[["checkin_id", "student_id", "received"]].rename(columns={"received": "answered_at"}).merge(
        st, on="student_id")
    merged = merged[(merged["received"] < merged["answered_at"])
                    & (merged["received"] >= merged["answered_at"] - window_s)]
    merged = merged.assign(attending=merged["state"].isin(ATTENDING), not_attending=merged["state"].isin(NOT_ATTENDING))
    out = merged.groupby(["checkin_id", "student_id"], as_index=False)[["attending", "not_attending"]].sum()
    return out[cols]


def agreement(checkins: pd.DataFrame, answers: pd.DataFrame, before: pd.DataFrame,
              min_group: int) -> dict[str, Any]:
    """"Where was your mind" answers against the camera's majority in the seconds before each.

    ``table[said][camera]`` counts answers; ``agreement`` is the share on the diagonal and ``kappa`` Cohen's kappa
    (agreement beyond what the two marginals give by chance). ``enough`` is False below ``min_group`` pairs."""
    table = {said: {cam: 0 for cam in LABELS} for said in LABELS}
    out = {"table": table, "n": 0, "answers": 0, "no_camera": 0, "agreement": None, "kappa": None,
           "enough": False, "min_group": min_group}
    if checkins is None or checkins.empty or answers is None or answers.empty:
        return out
    mind = set(checkins[checkins["kind"] == "mind"]["checkin_id"])
    said = answers[answers["checkin_id"].isin(mind)]
    out["answers"] = len(said)
    camera = {(r.checkin_id, r.student_id): (r.attending, r.not_attending) for r in before.itertuples()}
    for r in said.itertuples():
        a, n = camera.get((r.checkin_id, r.student_id), (0, 0))
        if a + n == 0 or r.option not in MIND_CLAIMS:
            out["no_camera"] += 1
            continue
        cam = "attending" if a >= n else "not attending"
        table["attending" if MIND_CLAIMS[r.option] else "not attending"][cam] += 1
        out["n"] += 1
    n = out["n"]
    if n:
        agree = sum(table[x][x] for x in LABELS) / n
        chance = sum(sum(table[x].values()) / n * sum(table[s][x] for s in LABELS) / n for x in LABELS)
        out["agreement"] = agree
        out["kappa"] = None if chance >= 1 else (agree - chance) / (1 - chance)
    out["enough"] = n >= min_group
    return out
