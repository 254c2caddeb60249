"""Where did the class lose interest: pure computations over a stored session's DataFrames.

Class series, per-segment table, drops and peaks; no I/O and no plotting (``build`` and ``html`` do those).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from smartsession.schema import STATES

#: Segment id given to messages sent before the teacher started the first segment.
BEFORE_SEGMENTS = "before-segments"
#: 1.4826 * MAD estimates the standard deviation of normal noise.
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class ReportSettings:
    """The report's analysis parameters (docs/REPORT.md explains the method they tune)."""

    bin_s: float = 5.0  # class series resolution: one mean per student per bin
    smooth_bins: int = 5  # rolling median over this many bins (25 s) before detection
    window_s: float = 60.0  # the drop detector compares this much time before and after each bin
    threshold: float = 2.0  # a drop must exceed this many standard errors of a difference of class means...
    min_drop: float = 8.0  # ...and at least this many engagement points, so a steady class raises no alarms
    student_drop: float = 10.0  # a student takes part in a drop when their own engagement fell this much
    min_group: int = 3  # per-segment aggregates of fewer students are not shown (privacy)
    min_minutes: float = 1.0  # segments with less class data than this are marked as resting on little data
    window_min: float = 5.0  # sessions without lecture segments are cut into windows this long
    max_peaks: int = 3
    #: Longest stretch of time a report is built for: its series and windows grow with the span, so a hostile
    #: or broken export (two states 3,000 years apart) is refused with a clear error instead of eating memory.
    max_span_h: float = 24.0
    answer_window_s: float = 30.0  # a check-in answer is set against the camera's states this long before it
    min_answers: int = 10  # fewer "Where was your mind" answers with camera data: "not enough answers"

    def __post_init__(self):
        if self.bin_s <= 0 or self.window_s < 2 * self.bin_s:
            raise ValueError("bin_s must be > 0 and window_s at least two bins: e.g. bin_s=5, window_s=60")
        if self.smooth_bins < 1 or self.min_group < 1 or self.window_min <= 0:
            raise ValueError("smooth_bins and min_group must be >= 1 and window_min > 0")
        if not 0 < self.max_span_h <= 24 * 366:
            raise ValueError("max_span_h must be more than 0 and at most a year of hours")

    @property
    def window_bins(self) -> int:
        return max(2, round(self.window_s / self.bin_s))


#: Columns of the per-(student, bin, segment, state) counts every computation below starts from.
COUNT_COLUMNS = ["student_id", "bin", "segment", "state", "t", "n", "engagement_sum"]


def state_counts(states: pd.DataFrame, t0: float | None, settings: ReportSettings) -> pd.DataFrame:
    """Collapse state rows into counts per (student, time bin, segment, state).

    Paused rows are left out (a paused student chose not to be measured) and so are rows without a
    finite engagement. ``t`` is the group's first capture time, ``n`` its rows and ``engagement_sum``
    their summed engagement, so every mean below weighs each message the same as the raw rows would.
    ``t0`` (default: the first capture time) is where bin 0 starts. A store computes the same
    frame in SQL (``Store.state_counts``, through ``build.SessionData.counts``), which is what keeps a
    540,000-message session fast.
    """
    required = {"student_id", "t", "state", "engagement"}
    missing = required - set(states.columns)
    if missing:
        raise ValueError(
            f"states are missing column(s) {', '.join(sorted(missing))}: pass Store.states(session_id) "
            "or a session export (CSV/Parquet/JSON) made by the store"
        )
    df = states
    if "paused" in df.columns:
        df = df[~df["paused"].fillna(False).astype(bool)]
    engagement = pd.to_numeric(df["engagement"], errors="coerce")
    df = df[np.isfinite(engagement)]
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("t", "engagement_sum") else object) for c in COUNT_COLUMNS})
    t = pd.to_numeric(df["t"]).to_numpy(float)
    t0 = float(t.min()) if t0 is None else t0
    seg = df["segment"] if "segment" in df.columns else pd.Series(None, index=df.index, dtype=object)
    frame = pd.DataFrame(
        {
            "student_id": df["student_id"].astype(str).to_numpy(),
            "bin": ((t - t0) // settings.bin_s).astype(np.int64),
            # A missing segment groups as "" and goes back to None below: groupby drops NaN keys.
            "segment": seg.astype(object).where(seg.notna(), "").astype(str).to_numpy(),
            "state": df["state"].astype(str).to_numpy(),
            "t": t,
            "engagement": pd.to_numeric(df["engagement"]).to_numpy(float),
        }
    )
    out = frame.groupby(["student_id", "bin", "segment", "state"], sort=False).agg(
        t=("t", "min"), n=("t", "size"), engagement_sum=("engagement", "sum")
    ).reset_index()
    out["segment"] = out["segment"].where(out["segment"] != "", None)
    return out[COUNT_COLUMNS]


def check_span(counts: pd.DataFrame, t0: float, settings: ReportSettings) -> None:
    """Refuse, before anything grows with it, data whose capture times span more than ``settings.max_span_h``."""
    if counts.empty:
        return
    t = counts["t"].to_numpy(float)
    first, last = min(float(t.min()), t0), float(t.max())
    span = last - first
    if math.isfinite(span) and span <= settings.max_span_h * 3600:
        return
    def when(x: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(x)) if math.isfinite(x) and 0 <= x < 253e9 else repr(x)

    raise ValueError(
        f"the states span {span / 3600:,.1f} hours (capture times from {when(first)} to {when(last)} UTC), more "
        f"than a report covers ({settings.max_span_h:g} h): report one lesson's session, or remove the rows "
        "with wrong times from the export"
    )


def resolve_segments(
    states: pd.DataFrame, segments: pd.DataFrame | None, settings: ReportSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Give each row of ``states`` (raw rows or :func:`state_counts`) a segment; return ``(states, segments)``.

    A row keeps the segment its message named; rows without one fall in the segment whose
    ``[start, end)`` holds their capture time. Sessions without any segment are cut into
    fixed ``window_min`` windows. The segments table gets ``start``/``end`` clipped to the data.
    """
    seg = segment_frame(segments)
    named = states["segment"].notna() if len(states) else pd.Series(dtype=bool)
    if seg.empty and not named.any():
        return _fixed_windows(states, settings)

    label = states["segment"].astype(object).where(named, None)
    if not seg.empty:
        starts = seg["start"].to_numpy(float)
        order = np.argsort(starts, kind="stable")
        idx = np.searchsorted(starts[order], states["t"].to_numpy(float), side="right") - 1
        ids = seg["segment_id"].to_numpy(object)[order]
        by_time = np.where(idx >= 0, ids[np.clip(idx, 0, None)], BEFORE_SEGMENTS)
        label = label.where(named, pd.Series(by_time, index=states.index))
    else:
        label = label.fillna(BEFORE_SEGMENTS)
    states = states.assign(segment=label.astype(str))

    # Segments named by messages but unknown to the table (or the first one's lead-in) still get a row.
    span = states.groupby("segment")["t"].agg(["min", "max"])
    extra = [s for s in span.index if s not in set(seg["segment_id"])]
    if extra:
        titles = {BEFORE_SEGMENTS: "Before the first segment"}
        rows = pd.DataFrame(
            {
                "segment_id": extra,
                "title": [titles.get(s, s) for s in extra],
                "start": span.loc[extra, "min"].to_numpy(),
                "end": span.loc[extra, "max"].to_numpy() + settings.bin_s,
            }
        )
        seg = pd.concat([seg, rows], ignore_index=True) if not seg.empty else rows
    # Segment times are the hub's clock when the teacher started them, states carry capture times.
    # A time-compressed simulation replays a timeline faster than the hub's clock: when none of a
    # segment's own messages fall inside its stored bounds, the two clocks disagree and the
    # messages' own span is the honest position of the segment.
    idx = seg.set_index("segment_id")
    inside = (states["t"] >= states["segment"].map(idx["start"])) & (
        states["t"] < states["segment"].map(idx["end"]).fillna(np.inf)
    )
    lost = span.index[~inside.groupby(states["segment"]).any().reindex(span.index).fillna(False).to_numpy(bool)]
    if len(lost):
        seg = _onto_capture_clock(seg.set_index("segment_id"), span, lost, settings.bin_s).reset_index()
    seg = seg.sort_values("start", kind="stable").reset_index(drop=True)
    # Segments tile the lesson as the store records them: each ends where the next starts (a repaired or
    # lead-in row must not overlap its neighbour); the last one ends when it was ended, or with the last message.
    last_t = states["t"].max() + settings.bin_s if len(states) else seg["start"].max()
    seg["end"] = seg["start"].shift(-1).fillna(seg["end"]).fillna(max(last_t, seg["start"].max()))
    return states, seg


def _onto_capture_clock(seg: pd.DataFrame, span: pd.DataFrame, lost, bin_s: float) -> pd.DataFrame:
    """Move segments stored on the hub's clock onto the messages' clock (``seg`` indexed by segment_id).

    Each lost segment starts with its first message; a segment without messages (a silent break) keeps
    its place between them, interpolated along the hub-to-capture mapping the lost segments give."""
    seg = seg.copy()
    pairs = pd.DataFrame({"hub": seg["start"].reindex(lost), "capture": span.loc[lost, "min"]}).dropna()
    pairs = pairs.sort_values("hub")
    hub, capture = pairs["hub"].to_numpy(float), pairs["capture"].to_numpy(float)
    silent = [s for s in seg.index if s not in span.index and pd.notna(seg.at[s, "start"])]
    if silent and len(hub):
        rate = (capture[-1] - capture[0]) / (hub[-1] - hub[0]) if len(hub) > 1 and hub[-1] > hub[0] else 1.0

        def onto(h):
            h = np.asarray(h, float)
            inner = np.interp(h, hub, capture)
            return np.where(h < hub[0], capture[0] + (h - hub[0]) * rate,
                            np.where(h > hub[-1], capture[-1] + (h - hub[-1]) * rate, inner))

        seg.loc[silent, "start"] = onto(seg.loc[silent, "start"])
        seg.loc[silent, "end"] = onto(seg.loc[silent, "end"])
    seg.loc[lost, "start"] = span.loc[lost, "min"]
    seg.loc[lost, "end"] = span.loc[lost, "max"] + bin_s
    return seg


def segment_frame(segments: pd.DataFrame | None) -> pd.DataFrame:
    cols = ["segment_id", "title", "start", "end"]
    if segments is None or len(segments) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("start", "end") else object) for c in cols})
    missing = set(cols) - set(segments.columns)
    if missing:
        raise ValueError(
            f"segments are missing column(s) {', '.join(sorted(missing))}: pass Store.segments(session_id)"
        )
    seg = segments[cols].copy()
    seg["segment_id"] = seg["segment_id"].astype(str)
    seg["title"] = seg["title"].fillna(seg["segment_id"]).astype(str)
    seg["start"] = pd.to_numeric(seg["start"])
    seg["end"] = pd.to_numeric(seg["end"])
    return seg


def _fixed_windows(states: pd.DataFrame, settings: ReportSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    if states.empty:
        empty = segment_frame(None)
        return states.assign(segment=pd.Series(dtype=object)), empty
    width = settings.window_min * 60
    t0 = states["t"].min()
    k = ((states["t"] - t0) // width).astype(int)
    n = int(k.max()) + 1
    ids = [f"w{i + 1:02d}" for i in range(n)]
    m = settings.window_min
    seg = pd.DataFrame(
        {
            "segment_id": ids,
            "title": [f"{i * m:g}-{(i + 1) * m:g} min" for i in range(n)],
            "start": [t0 + i * width for i in range(n)],
            "end": [min(t0 + (i + 1) * width, states["t"].max() + settings.bin_s) for i in range(n)],
        }
    )
    return states.assign(segment=np.asarray(ids, dtype=object)[k.to_numpy()]), seg


def student_bins(counts: pd.DataFrame, t0: float, settings: ReportSettings) -> pd.DataFrame:
    """One row per student per time bin: mean engagement, messages, the state and segment they were in most."""
    cols = ["student_id", "bin", "t", "engagement", "messages", "state", "segment"]
    if counts.empty:
        return pd.DataFrame({c: [] for c in cols})
    keys = ["student_id", "bin"]
    agg = counts.groupby(keys, sort=True).agg(messages=("n", "sum"), total=("engagement_sum", "sum"))
    agg["engagement"] = agg["total"] / agg["messages"]
    for col in ("state", "segment"):
        most = counts.groupby(keys + [col], sort=False)["n"].sum().reset_index()
        most = most.sort_values("n", ascending=False, kind="stable").drop_duplicates(keys).set_index(keys)
        agg[col] = most[col]
    agg = agg.reset_index()
    agg["t"] = t0 + agg["bin"] * settings.bin_s
    return agg[cols]


def class_series(bins: pd.DataFrame, t0: float, settings: ReportSettings) -> pd.DataFrame:
    """The class's engagement per bin (each present student weighs the same), with gaps kept as NaN.

    ``smoothed`` is a centred rolling median over ``smooth_bins`` bins: what the detector looks at.
    """
    cols = ["bin", "t", "offset_s", "engagement", "students", "se", "smoothed"]
    if bins.empty:
        return pd.DataFrame({c: [] for c in cols})
    g = bins.groupby("bin").agg(
        engagement=("engagement", "mean"), students=("student_id", "nunique"), sd=("engagement", "std")
    )
    g["se"] = g["sd"] / np.sqrt(g["students"])  # NaN with a single student
    full = np.arange(int(g.index.min()), int(g.index.max()) + 1)
    g = g.reindex(full)
    g["students"] = g["students"].fillna(0).astype(int)
    g.index.name = "bin"
    g = g.reset_index()
    g["offset_s"] = g["bin"] * settings.bin_s
    g["t"] = t0 + g["offset_s"]
    g["smoothed"] = g["engagement"].rolling(settings.smooth_bins, center=True, min_periods=1).median()
    return g[cols]


def _window_means(y: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the ``w`` bins before each bin and of the ``w`` bins from it on (NaN if half is missing).

    Means rather than medians: the series is already median-smoothed, and a mean peaks exactly at a step.
    """
    s = pd.Series(y)
    before = s.rolling(w, min_periods=max(1, w // 2)).mean().shift(1).to_numpy()
    after = s[::-1].rolling(w, min_periods=max(1, w // 2)).mean()[::-1].to_numpy()
    return before, after


def change_scores(series: pd.DataFrame, settings: ReportSettings) -> tuple[np.ndarray, float]:
    """``after - before`` window means of the smoothed series at each bin, and the drop threshold.

    The threshold is ``max(min_drop, threshold * sigma)`` where sigma is the standard error of a
    difference of two class means: ``sqrt(2) * median(se)``, ``se`` being each bin's spread between
    students over the square root of their number. It treats a window like a single bin (students'
    states last longer than a bin, so bins within a window are far from independent), which errs on the
    side of fewer alarms; it comes from the spread between students rather than from the series itself,
    so a lesson short enough for its changes to fill most of it does not hide them. With never more
    than one student present, sigma falls back to the MAD-estimated spread of the scores.
    """
    y = series["smoothed"].to_numpy(float)
    before, after = _window_means(y, settings.window_bins)
    d = after - before
    finite = d[np.isfinite(d)]
    if finite.size == 0:
        return d, float("inf")
    se = series["se"].dropna()
    if len(se):
        sigma = float(np.sqrt(2) * se.median())
    else:
        sigma = MAD_TO_SIGMA * float(np.median(np.abs(finite - np.median(finite))))
    return d, max(settings.min_drop, settings.threshold * sigma)


def _separated(order: np.ndarray, w: int) -> list[int]:
    """Indices from ``order`` (best first), skipping any within ``w`` bins of one already taken."""
    taken: list[int] = []
    for i in order:
        if all(abs(i - j) >= w for j in taken):
            taken.append(int(i))
    return taken


def detect_drops(
    series: pd.DataFrame, bins: pd.DataFrame, segments: pd.DataFrame, settings: ReportSettings
) -> pd.DataFrame:
    """Moments where class engagement fell, largest first.

    Each: ``t`` (start of the first lower bin), ``offset_s``, ``segment_id``, ``before``/``after``
    (mean smoothed engagement in the windows either side), ``drop`` (points), ``students`` (present
    in both windows) and ``involved`` (of those, how many fell by at least ``student_drop``).
    """
    cols = ["t", "offset_s", "segment_id", "before", "after", "drop", "students", "involved"]
    if series.empty:
        return pd.DataFrame({c: [] for c in cols})
    d, thr = change_scores(series, settings)
    w = settings.window_bins
    y = series["smoothed"].to_numpy(float)
    before, after = _window_means(y, w)
    cand = np.flatnonzero(np.nan_to_num(d, nan=0.0) <= -thr)
    rows = []
    for i in _separated(cand[np.argsort(d[cand], kind="stable")], w):
        b = int(series["bin"].iloc[i])
        rows.append(
            {
                "t": float(series["t"].iloc[i]),
                "offset_s": float(series["offset_s"].iloc[i]),
                "segment_id": segment_at(segments, float(series["t"].iloc[i])),
                "before": float(before[i]),
                "after": float(after[i]),
                "drop": float(before[i] - after[i]),
                **_involvement(bins, b, w, settings.student_drop),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def _involvement(bins: pd.DataFrame, b: int, w: int, fall: float) -> dict[str, int]:
    pre = bins[(bins["bin"] >= b - w) & (bins["bin"] < b)].groupby("student_id")["engagement"].mean()
    post = bins[(bins["bin"] >= b) & (bins["bin"] < b + w)].groupby("student_id")["engagement"].mean()
    both = pre.index.intersection(post.index)
    return {"students": int(len(both)), "involved": int(((pre[both] - post[both]) >= fall).sum())}


def detect_peaks(series: pd.DataFrame, segments: pd.DataFrame, settings: ReportSettings) -> pd.DataFrame:
    """The class's most engaged moments: highest local maxima of the smoothed series, a window apart,
    at least ``min_drop`` points above the session baseline (a flat class has no peaks)."""
    cols = ["t", "offset_s", "segment_id", "engagement", "above_baseline", "students"]
    y = series["smoothed"].to_numpy(float) if len(series) else np.array([])
    if not np.isfinite(y).any():
        return pd.DataFrame({c: [] for c in cols})
    w = settings.window_bins
    local_max = pd.Series(y).rolling(2 * w + 1, center=True, min_periods=1).max().to_numpy()
    base = baseline(series)
    cand = np.flatnonzero(np.isfinite(y) & (y >= local_max) & (y >= base + settings.min_drop))
    rows = []
    for i in _separated(cand[np.argsort(-y[cand], kind="stable")], w)[: settings.max_peaks]:
        t = float(series["t"].iloc[i])
        rows.append(
            {
                "t": t,
                "offset_s": float(series["offset_s"].iloc[i]),
                "segment_id": segment_at(segments, t),
                "engagement": float(y[i]),
                "above_baseline": float(y[i] - base),
                "students": int(series["students"].iloc[i]),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def baseline(series: pd.DataFrame) -> float:
    """The class's own session baseline: median class engagement over all bins with data."""
    e = series["engagement"].dropna() if len(series) else pd.Series(dtype=float)
    return float(e.median()) if len(e) else float("nan")


def segment_at(segments: pd.DataFrame, t: float) -> str | None:
    hit = segments[(segments["start"] <= t) & (t < segments["end"])]
    if hit.empty:
        return None
    return str(hit.sort_values("start")["segment_id"].iloc[-1])


def segment_table(
    counts: pd.DataFrame, segments: pd.DataFrame, base: float, settings: ReportSettings
) -> pd.DataFrame:
    """Per segment: who and how much data it rests on, engagement mean/spread, state shares, drop vs baseline.

    ``mean`` averages the students' own segment means (each student weighs the same); ``spread`` is
    their standard deviation. Segments of fewer than ``min_group`` students show counts only.
    ``rank`` orders the shown segments by ``drop`` (baseline minus mean), the biggest drop first.
    """
    share_cols = [f"share_{s}" for s in STATES]
    cols = ["segment_id", "title", "start", "end", "duration_min", "students", "messages",
            "data_minutes", "student_minutes", "mean", "spread", *share_cols, "drop", "shown", "note", "rank"]
    if segments.empty:
        return pd.DataFrame({c: [] for c in cols})
    seg = segments.set_index("segment_id")
    seg["duration_min"] = (seg["end"] - seg["start"]) / 60
    by_seg = counts.groupby("segment")
    seg["students"] = by_seg["student_id"].nunique().reindex(seg.index).fillna(0).astype(int)
    seg["messages"] = by_seg["n"].sum().reindex(seg.index).fillna(0).astype(int)
    # Minutes of class data (bins where anyone was measured) and student-minutes (summed over students).
    per_bin = settings.bin_s / 60
    seg["data_minutes"] = by_seg["bin"].nunique().reindex(seg.index).fillna(0) * per_bin
    student_bins_ = counts[["segment", "student_id", "bin"]].drop_duplicates()
    seg["student_minutes"] = student_bins_.groupby("segment").size().reindex(seg.index).fillna(0) * per_bin
    per_student = counts.groupby(["segment", "student_id"])[["n", "engagement_sum"]].sum()
    means = per_student["engagement_sum"] / per_student["n"]
    seg["mean"] = means.groupby(level=0).mean().reindex(seg.index)
    seg["spread"] = means.groupby(level=0).std(ddof=0).reindex(seg.index)
    # Share of each state: each student's share of their own messages, averaged over students.
    by_state = counts.groupby(["segment", "student_id", "state"])["n"].sum()
    shares = (by_state / per_student["n"].reindex(by_state.index.droplevel("state")).to_numpy()).unstack("state")
    shares = shares.fillna(0.0).groupby(level=0).mean() if len(shares) else shares
    for s in STATES:
        seg[f"share_{s}"] = shares[s].reindex(seg.index) if s in shares else np.where(seg["students"] > 0, 0.0, np.nan)
    seg["drop"] = base - seg["mean"]
    seg["shown"] = seg["students"] >= settings.min_group
    seg["note"] = [_note(r, settings) for r in seg.itertuples()]
    seg.loc[~seg["shown"], ["mean", "spread", "drop", *share_cols]] = np.nan
    seg["rank"] = seg["drop"].rank(ascending=False, method="first")
    return seg.reset_index()[cols]


def _note(row, settings: ReportSettings) -> str:
    if row.students == 0:
        return "no data"
    if row.students < settings.min_group:
        return f"fewer than {settings.min_group} students: aggregates not shown"
    if row.data_minutes < settings.min_minutes:
        return f"little data: {row.data_minutes:.1f} min"
    return ""
