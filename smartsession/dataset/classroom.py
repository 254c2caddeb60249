"""Labels from the classroom: each check-in answer joined with what the store holds for that student in the
seconds before it (states, engagement, the named scalars), never frames (the store has none).

Only answers to check-ins the teacher sent with "use answers for research" on, from students who agreed on
their consent screen, become rows. Students appear under a pseudonym per session (a hash), never by name or id.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pandas as pd

from smartsession.report.checkins import ATTENDING, NOT_ATTENDING
from smartsession.schema import SHARED_FEATURES, STATES

#: Columns of a labelled row.
ROW_COLUMNS = [
    "session_id", "checkin_id", "kind", "question", "answer", "option", "pseudonym", "answered_at", "states",
    "attending_share", "camera_attending", "engagement", "confidence", *(f"share_{s}" for s in STATES),
    *SHARED_FEATURES,
]


def pseudonym(session_id: str, student_id: str) -> str:
    return hashlib.sha256(f"{session_id}/{student_id}".encode()).hexdigest()[:12]


def labelled_rows(store: Any, class_id: str | None = None, window_s: float = 30.0) -> pd.DataFrame:
    """Every research-usable answer of the store's sessions (of ``class_id``, or all) as one row, with the
    answering student's states in the ``window_s`` seconds (hub receive time) before the answer summarised."""
    if not window_s > 0:
        raise ValueError("window_s must be a positive number of seconds")
    rows = []
    for session_id in store.sessions(class_id)["session_id"].astype(str):
        checkins = store.checkins(session_id)
        if checkins.empty or not checkins["research"].any():
            continue
        answers = store.answers(session_id)
        answers = answers[answers["research"]]
        checkins = checkins[checkins["research"]].set_index("checkin_id")
        answers = answers[answers["checkin_id"].isin(checkins.index)]
        if answers.empty:
            continue
        states = store.states(session_id)
        states = states[~states["paused"]]
        for a in answers.itertuples():
            ck = checkins.loc[a.checkin_id]
            before = states[(states["student_id"] == a.student_id) & (states["received"] < a.received)
                            & (states["received"] >= a.received - window_s)]
            n = len(before)
            att, nat = before["state"].isin(ATTENDING).sum(), before["state"].isin(NOT_ATTENDING).sum()
            row = {
                "session_id": session_id, "checkin_id": a.checkin_id, "kind": ck["kind"],
                "question": ck["question"], "answer": ck["options"][a.option], "option": int(a.option),
                "pseudonym": pseudonym(session_id, a.student_id), "answered_at": float(a.received), "states": n,
                "attending_share": float(att / (att + nat)) if att + nat else float("nan"),
                "camera_attending": None if att + nat == 0 else bool(att >= nat),
                "engagement": float(before["engagement"].mean()) if n else float("nan"),
                "confidence": float(before["confidence"].mean()) if n else float("nan"),
            }
            for s in STATES:
                row[f"share_{s}"] = float((before["state"] == s).mean()) if n else float("nan")
            for f in SHARED_FEATURES:
                row[f] = float(before[f].mean()) if n else float("nan")
            rows.append(row)
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def attention_agreement(rows: pd.DataFrame) -> dict[str, Any]:
    """How the analyser's attention (the camera's majority before the answer) agrees with "Where was your
    mind" answers in labelled rows: counts, agreement and a confusion table (rows: said; columns: camera)."""
    mind = rows[(rows["kind"] == "mind") & rows["camera_attending"].notna()]
    said = mind["option"] == 0
    camera = mind["camera_attending"].astype(bool)
    table = pd.crosstab(said.map({True: "said: on the lesson", False: "said: somewhere else"}),
                        camera.map({True: "camera: attending", False: "camera: not attending"}))
    return {"n": int(len(mind)), "agreement": float((said == camera).mean()) if len(mind) else None,
            "table": table}
