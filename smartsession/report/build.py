"""The after-lesson report as data: load a stored session, run the analysis, make the figures.

``build_report`` serves both ``smartsession report`` and the teacher dashboard's Report view.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from smartsession.cells import safe_frame
from smartsession.hub.pgstore import is_postgres_url
from smartsession.hub.store import STATE_COLUMNS
from smartsession.report import analysis
from smartsession.report.analysis import ReportSettings

EXPORT_FORMATS = ("html", "csv", "parquet")


#: A student's clock counts as off when its capture times sit this many seconds from the hub's receive times...
CLOCK_OFF_S = 2.0
#: ...steadily: the middle half of its offsets within this many seconds of each other. A time-compressed
#: simulation (capture times running ahead of the hub's clock) drifts far more, and is left as it is.
CLOCK_STEADY_S = 2.0
#: Offsets looked at per session at most (a 540,000-row lesson is sampled, by seq).
CLOCK_SAMPLE = 20000


def clock_offsets(offsets: pd.DataFrame) -> dict[str, float]:
    """Per student, what to add to its capture times ``t`` to put them on the hub's clock.

    ``offsets``: columns ``student_id`` and ``offset`` (``received - t``). A student's offset is the hub's
    clock minus its own plus the network delay; a student whose offset is large and steady has a wrong clock
    (a laptop set an hour off), and its times move by the median offset, so its states land in the bins and
    segments they happened in. Everyone else keeps their capture times (their delay is not a clock error).
    """
    out: dict[str, float] = {}
    if offsets.empty:
        return out
    for student_id, values in offsets.groupby("student_id")["offset"]:
        q1, median, q3 = values.quantile([0.25, 0.5, 0.75])
        if abs(median) > CLOCK_OFF_S and q3 - q1 <= CLOCK_STEADY_S:
            out[str(student_id)] = float(median)
    return out


@dataclass
class SessionData:
    """One stored session: its states (rows, or counted on demand by the ``store`` holding them, SQLite or
    PostgreSQL alike), segments and students, as a store returns them or a session export holds them.

    ``close()`` closes the store when :func:`load_session` opened it (a data directory or a URL); closing twice
    is harmless."""

    states: pd.DataFrame | None
    segments: pd.DataFrame = field(default_factory=pd.DataFrame)
    students: pd.DataFrame = field(default_factory=pd.DataFrame)
    session_id: str = ""
    title: str = ""
    store: Any = None
    owns_store: bool = False
    checkins: pd.DataFrame = field(default_factory=pd.DataFrame)
    answers: pd.DataFrame = field(default_factory=pd.DataFrame)
    _clock_fix: dict[str, float] | None = field(default=None, repr=False, compare=False)

    def __enter__(self) -> "SessionData":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.owns_store and self.store is not None:
            self.store.close()
        self.owns_store = False

    @classmethod
    def from_export(cls, doc: dict[str, Any]) -> "SessionData":
        """A session from the store's JSON export (``Store.session_json`` / ``export_session(format="json")``)."""
        if not isinstance(doc, dict) or "states" not in doc:
            raise ValueError("not a session export: make one with Store.export_session(..., format='json')")
        session = doc.get("session") or {}
        return cls(
            states=pd.DataFrame(doc["states"], columns=None if doc["states"] else STATE_COLUMNS),
            segments=pd.DataFrame(doc.get("segments") or []),
            students=pd.DataFrame(doc.get("students") or []),
            session_id=str(session.get("session_id") or ""),
            title=session.get("title") or "",
            checkins=pd.DataFrame(doc.get("checkins") or []),
            answers=pd.DataFrame(doc.get("answers") or []),
        )

    def states_before_answers(self, window_s: float) -> pd.DataFrame:
        """Per answer, the attending and not-attending states the student sent in the ``window_s`` seconds
        before it (``report.checkins.camera_before``); counted by the store when the rows stay there."""
        from smartsession.report.checkins import ATTENDING, NOT_ATTENDING, camera_before

        if self.answers is None or self.answers.empty:
            return camera_before(None, None, window_s)
        if self.states is not None:
            return camera_before(self.states, self.answers, window_s)
        return self.store.answer_windows(self.session_id, window_s, ATTENDING, NOT_ATTENDING)

    @property
    def clock_fix(self) -> dict[str, float]:
        """Seconds to add to each wrong-clocked student's capture times (see :func:`clock_offsets`)."""
        if self._clock_fix is None:
            if self.states is not None:
                st = self.states
                if len(st) and "received" in st.columns:
                    frame = pd.DataFrame({"student_id": st["student_id"].astype(str),
                                          "offset": pd.to_numeric(st["received"]) - pd.to_numeric(st["t"])})
                    self._clock_fix = clock_offsets(frame.dropna())
                else:
                    self._clock_fix = {}
            else:
                self._clock_fix = clock_offsets(self.store.clock_sample(self.session_id, CLOCK_SAMPLE))
        return self._clock_fix

    def aligned_states(self) -> pd.DataFrame | None:
        """``states`` with the wrong-clocked students' capture times on the hub's clock."""
        if self.states is None or not self.clock_fix or not len(self.states):
            return self.states
        st = self.states.copy()
        st["t"] = pd.to_numeric(st["t"]) + st["student_id"].astype(str).map(self.clock_fix).fillna(0.0)
        return st

    def lesson_start(self) -> float:
        """Where bin 0 starts: the first state, or the first segment if the teacher started it earlier."""
        seg = analysis.segment_frame(self.segments)
        starts = [x for x in (self.first_t(), seg["start"].min() if len(seg) else None) if x is not None]
        return float(min(starts)) if starts else 0.0

    def first_t(self) -> float | None:
        """The first capture time, or None when the session has no states."""
        if self.states is not None:
            states = self.aligned_states()
            t = pd.to_numeric(states["t"]) if len(states) else pd.Series(dtype=float)
            return float(t.min()) if len(t) else None
        return self.store.first_state_time(self.session_id, self.clock_fix)

    def counts(self, t0: float, settings: ReportSettings) -> pd.DataFrame:
        """States collapsed per (student, bin, segment, state) from ``t0`` (see :func:`analysis.state_counts`)."""
        if self.states is not None:
            return analysis.state_counts(self.aligned_states(), t0, settings)
        # Counted by the store's database (analysis.state_counts in SQL): the rows never become Python objects.
        return self.store.state_counts(self.session_id, t0, settings.bin_s, self.clock_fix)[analysis.COUNT_COLUMNS]


def load_session(source: Any, session_id: str | None = None) -> SessionData:
    """Frames of one session from a ``Store``, a data directory, a session export file or DataFrames.

    ``source`` may be a :class:`SessionData`, a states DataFrame, an open ``Store``, a directory holding
    ``smartsession.sqlite3`` (``session_id`` then names the session; the latest one if omitted) or a
    CSV/Parquet/JSON export of a session's states.
    """
    if isinstance(source, SessionData):
        return source
    if isinstance(source, pd.DataFrame):
        sid = str(source["session_id"].iloc[0]) if "session_id" in source and len(source) else (session_id or "")
        return SessionData(states=source, session_id=sid)
    if isinstance(source, str) and is_postgres_url(source):
        from smartsession.hub.pgstore import PostgresStore

        return _opened(PostgresStore(source), session_id)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            from smartsession.hub.store import Store

            db = path / "smartsession.sqlite3"
            if not db.exists():
                raise FileNotFoundError(f"no session store at {db}: pass the hub's --data-dir")
            return _opened(Store(db), session_id)
        return _load_export(path, session_id)
    if hasattr(source, "state_counts") and hasattr(source, "sessions"):
        return _load_store(source, session_id)
    raise TypeError(
        f"cannot read a session from {type(source).__name__}: pass a Store, a data directory, "
        "an export file or a states DataFrame"
    )


def _opened(store: Any, session_id: str | None) -> SessionData:
    """The session from a store opened for it, which the returned data closes."""
    try:
        data = _load_store(store, session_id)
    except BaseException:
        store.close()
        raise
    data.owns_store = True
    return data


def _load_store(store: Any, session_id: str | None) -> SessionData:
    sessions = store.sessions()
    if session_id is None:
        if len(sessions) == 0:
            raise LookupError("the store holds no session yet: run a class (or `smartsession simulate`) first")
        session_id = str(sessions.sort_values("started")["session_id"].iloc[-1])
    known = sessions[sessions["session_id"].astype(str) == str(session_id)]
    if known.empty:
        listed = ", ".join(map(str, sessions["session_id"].tolist()[-10:])) or "none"
        raise LookupError(f"no session {session_id!r} in the store; known sessions: {listed}")
    title = known["title"].iloc[0]
    if title is None or (isinstance(title, float) and math.isnan(title)):
        # Sessions opened implicitly have no title: name them after their class.
        info = store.class_info(str(known["class_id"].iloc[0]))
        title = info["title"] if info and info.get("title") else None
    store.flush()  # what the hub has accepted so far is in the database the report reads
    return SessionData(
        states=None,
        segments=store.segments(session_id),
        # The class's roster (indexed by class) has the names; store.students() scans every state.
        students=_roster(store, str(known["class_id"].iloc[0])),
        session_id=str(session_id),
        title="" if title is None or (isinstance(title, float) and math.isnan(title)) else str(title),
        store=store,
        checkins=store.checkins(session_id) if hasattr(store, "checkins") else pd.DataFrame(),
        answers=store.answers(session_id) if hasattr(store, "answers") else pd.DataFrame(),
    )


def _roster(store: Any, class_id: str) -> pd.DataFrame:
    return pd.DataFrame(store.class_students(class_id), columns=["student_id", "name", "hidden"])


def _load_export(path: Path, session_id: str | None) -> SessionData:
    """A CSV/Parquet export of a session's states, or the store's JSON export of the whole session."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: pass a session export or the hub's data directory")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = SessionData.from_export(json.loads(path.read_text()))
        except ValueError as exc:
            raise ValueError(f"{path.name}: {exc}") from None
        data.session_id = data.session_id or session_id or path.stem
        return data
    readers = {".csv": pd.read_csv, ".parquet": pd.read_parquet}
    if suffix not in readers:
        raise ValueError(f"{path.name}: unknown export format; use .csv, .parquet or .json")
    states = readers[suffix](path)
    if session_id is not None and "session_id" in states:
        states = states[states["session_id"].astype(str) == str(session_id)]
    sid = session_id or (str(states["session_id"].iloc[0]) if "session_id" in states and len(states) else path.stem)
    return SessionData(states=states, session_id=sid)


@dataclass
class Report:
    """Everything the report shows; ``figures()`` and ``to_html()`` render it, ``write()`` exports it."""

    session_id: str
    title: str
    settings: ReportSettings
    t0: float
    baseline: float
    labels: dict[str, str]  # student_id -> label shown (anonymised unless names were asked for)
    counts: pd.DataFrame  # states per (student, bin, segment, state), each with its resolved segment
    student_series: pd.DataFrame  # per student per bin
    class_series: pd.DataFrame
    segments: pd.DataFrame  # per-segment table, ranked
    drops: pd.DataFrame
    peaks: pd.DataFrame
    windows: bool  # True when the session had no segments and fixed windows stand in
    checkins: list = field(default_factory=list)  # per check-in: segment, question, counts per option
    agreement: dict = field(default_factory=dict)  # "Where was your mind" vs the camera (report.checkins)

    @property
    def n_students(self) -> int:
        return len(self.labels)

    @property
    def minutes(self) -> float:
        """Minutes of class data: time bins in which at least one student was measured."""
        return float((self.class_series["students"] > 0).sum() * self.settings.bin_s / 60) if len(self.class_series) else 0.0

    @property
    def messages(self) -> int:
        """Measurements the report rests on (paused ones left out)."""
        return int(self.counts["n"].sum()) if len(self.counts) else 0

    @property
    def empty(self) -> bool:
        return self.counts.empty

    def ranked_segments(self) -> pd.DataFrame:
        """Segments with enough students, biggest drop below the baseline first; the rest after them."""
        return self.segments.sort_values(["rank", "start"], na_position="last", kind="stable").reset_index(drop=True)

    def segment_title(self, segment_id: str | None) -> str:
        hit = self.segments[self.segments["segment_id"] == segment_id]
        return str(hit["title"].iloc[0]) if len(hit) else "-"

    def clock(self, t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%H:%M:%S UTC")

    def tables(self) -> dict[str, pd.DataFrame]:
        """The exports: per-student time series, per-segment table, class series and the moments."""
        label = self.student_series["student_id"].map(self.labels)
        students = self.student_series.assign(
            student=label,
            offset_s=self.student_series["t"] - self.t0,
            segment_title=self.student_series["segment"].map(self._titles()),
        )
        keep = ["student", "t", "offset_s", "segment", "segment_title", "engagement", "state", "messages"]
        if not self._anonymised:
            keep.insert(1, "student_id")
        drops = self.drops.assign(kind="drop", segment_title=self.drops["segment_id"].map(self._titles()))
        peaks = self.peaks.assign(kind="peak", segment_title=self.peaks["segment_id"].map(self._titles()))
        return {
            "students": students[keep],
            "segments": self.ranked_segments(),
            "class": self.class_series,
            "moments": pd.concat([drops, peaks], ignore_index=True) if len(drops) or len(peaks) else drops,
        }

    @property
    def _anonymised(self) -> bool:
        return all(v.startswith("Student ") for v in self.labels.values())

    def _titles(self) -> dict[str, str]:
        return dict(zip(self.segments["segment_id"], self.segments["title"]))

    def figures(self) -> dict[str, Any]:
        """Plotly figures: ``engagement`` (class over time), ``states`` (per segment), ``students``."""
        from smartsession.report import figures

        return {
            "engagement": figures.engagement_figure(self),
            "states": figures.states_figure(self),
            "students": figures.students_figure(self),
        }

    def to_html(self) -> str:
        from smartsession.report.html import render

        return render(self)

    def write(self, out_dir: str | Path, formats: tuple[str, ...] | list[str] = ("html", "csv")) -> list[Path]:
        """Write ``report.html`` and/or the tables as ``<name>.csv`` / ``<name>.parquet``; return the paths."""
        unknown = set(formats) - set(EXPORT_FORMATS)
        if unknown:
            raise ValueError(f"unknown format(s) {', '.join(sorted(unknown))}: choose from {', '.join(EXPORT_FORMATS)}")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        if "html" in formats:
            p = out / "report.html"
            p.write_text(self.to_html(), encoding="utf-8")
            written.append(p)
        for name, table in self.tables().items():
            if "csv" in formats:
                written.append(out / f"{name}.csv")
                safe_frame(table).to_csv(written[-1], index=False)
            if "parquet" in formats:
                written.append(out / f"{name}.parquet")
                table.to_parquet(written[-1], index=False)
        return written


def build_report(
    source: Any,
    session_id: str | None = None,
    *,
    settings: ReportSettings | None = None,
    names: bool = False,
) -> Report:
    """Build the report of one session (see :func:`load_session` for ``source``).

    Students are labelled "Student 1", "Student 2"... in order of arrival unless ``names`` is true,
    which shows the names they joined with (for the teacher's own eyes, never for sharing).
    """
    settings = settings or ReportSettings()
    data = load_session(source, session_id)
    try:
        return _report(data, settings, names)
    finally:
        if data is not source:
            data.close()  # the store load_session opened for it (a directory or a URL), if any


def _report(data: SessionData, settings: ReportSettings, names: bool) -> Report:
    seg_frame = analysis.segment_frame(data.segments)
    t0 = data.lesson_start()
    counts = data.counts(t0, settings)
    analysis.check_span(counts, t0, settings)
    windows = seg_frame.empty and not counts["segment"].notna().any()
    counts, segments = analysis.resolve_segments(counts, seg_frame, settings)
    bins = analysis.student_bins(counts, t0, settings)
    series = analysis.class_series(bins, t0, settings)
    base = analysis.baseline(series)
    from smartsession.report import checkins as asked

    before = data.states_before_answers(settings.answer_window_s)
    return Report(
        checkins=asked.answers_per_segment(data.checkins, data.answers),
        agreement=asked.agreement(data.checkins, data.answers, before, settings.min_answers),
        session_id=data.session_id,
        title=data.title,
        settings=settings,
        t0=t0,
        baseline=base,
        labels=_labels(counts, data.students, names),
        counts=counts,
        student_series=bins,
        class_series=series,
        segments=analysis.segment_table(counts, segments, base, settings),
        drops=analysis.detect_drops(series, bins, segments, settings),
        peaks=analysis.detect_peaks(series, segments, settings),
        windows=bool(windows),
    )


def report_html(source: Any, session_id: str | None = None, **options) -> str:
    """The self-contained HTML report of one session (plotly inlined, no network needed)."""
    return build_report(source, session_id, **options).to_html()


def _labels(counts: pd.DataFrame, students: pd.DataFrame, names: bool) -> dict[str, str]:
    order = counts.groupby("student_id")["t"].min().sort_values(kind="stable").index if len(counts) else []
    width = len(str(len(order)))
    labels = {sid: f"Student {i + 1:0{width}d}" for i, sid in enumerate(order)}
    if names and len(students):
        named = students.dropna(subset=["name"]).astype({"student_id": str})
        given = dict(zip(named["student_id"], named["name"].astype(str)))
        labels = {sid: given.get(sid) or sid for sid in labels}
    return labels

