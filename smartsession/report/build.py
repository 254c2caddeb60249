"""The after-lesson report as data: load a stored session, run the analysis, make the figures.

``build_report`` serves both ``smartsession report`` and the teacher dashboard's Report view.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from smartsession.report import analysis
from smartsession.report.analysis import ReportSettings

EXPORT_FORMATS = ("html", "csv", "parquet")


@dataclass
class SessionData:
    """The stored frames of one session, as ``Store`` returns them (or a session export holds them)."""

    states: pd.DataFrame
    segments: pd.DataFrame = field(default_factory=pd.DataFrame)
    students: pd.DataFrame = field(default_factory=pd.DataFrame)
    session_id: str = ""
    title: str = ""


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
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            from smartsession.hub.store import Store

            db = path / "smartsession.sqlite3"
            if not db.exists():
                raise FileNotFoundError(f"no session store at {db}: pass the hub's --data-dir")
            with Store(db) as store:
                return load_session(store, session_id)
        return _load_export(path, session_id)
    if hasattr(source, "states") and hasattr(source, "sessions"):
        return _load_store(source, session_id)
    raise TypeError(
        f"cannot read a session from {type(source).__name__}: pass a Store, a data directory, "
        "an export file or a states DataFrame"
    )


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
    return SessionData(
        states=store.states(session_id),
        segments=store.segments(session_id),
        students=store.students(session_id),
        session_id=str(session_id),
        title="" if title is None or (isinstance(title, float) and math.isnan(title)) else str(title),
    )


def _load_export(path: Path, session_id: str | None) -> SessionData:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: pass a session export or the hub's data directory")
    readers = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".json": pd.read_json}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{path.name}: unknown export format; use .csv, .parquet or .json")
    states = reader(path)
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
    states: pd.DataFrame  # cleaned rows with their segment
    student_series: pd.DataFrame  # per student per bin
    class_series: pd.DataFrame
    segments: pd.DataFrame  # per-segment table, ranked
    drops: pd.DataFrame
    peaks: pd.DataFrame
    windows: bool  # True when the session had no segments and fixed windows stand in

    @property
    def n_students(self) -> int:
        return len(self.labels)

    @property
    def minutes(self) -> float:
        """Minutes of class data: time bins in which at least one student was measured."""
        return float((self.class_series["students"] > 0).sum() * self.settings.bin_s / 60) if len(self.class_series) else 0.0

    @property
    def messages(self) -> int:
        return len(self.states)

    @property
    def empty(self) -> bool:
        return self.states.empty

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
                table.to_csv(written[-1], index=False)
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
    states = analysis.clean_states(data.states)
    windows = len(data.segments) == 0 and not states["segment"].notna().any()
    states, segments = analysis.resolve_segments(states, data.segments, settings)
    t0 = float(min(states["t"].min(), segments["start"].min())) if len(states) else (
        float(segments["start"].min()) if len(segments) else 0.0
    )
    bins = analysis.student_bins(states, t0, settings)
    series = analysis.class_series(bins, t0, settings)
    base = analysis.baseline(series)
    table = analysis.segment_table(states, bins, segments, base, settings)
    return Report(
        session_id=data.session_id,
        title=data.title,
        settings=settings,
        t0=t0,
        baseline=base,
        labels=_labels(states, data.students, names),
        states=states,
        student_series=bins,
        class_series=series,
        segments=table,
        drops=analysis.detect_drops(series, bins, segments, settings),
        peaks=analysis.detect_peaks(series, segments, settings),
        windows=bool(windows),
    )


def report_html(source: Any, session_id: str | None = None, **options) -> str:
    """The self-contained HTML report of one session (plotly inlined, no network needed)."""
    return build_report(source, session_id, **options).to_html()


def _labels(states: pd.DataFrame, students: pd.DataFrame, names: bool) -> dict[str, str]:
    order = states.groupby("student_id")["t"].min().sort_values(kind="stable").index if len(states) else []
    width = len(str(len(order)))
    labels = {sid: f"Student {i + 1:0{width}d}" for i, sid in enumerate(order)}
    if names and len(students):
        named = students.dropna(subset=["name"]).astype({"student_id": str})
        given = dict(zip(named["student_id"], named["name"].astype(str)))
        labels = {sid: given.get(sid) or sid for sid in labels}
    return labels

