"""The report as one self-contained HTML page: plotly.js inlined once, no CDN, opens offline.

``render(report)`` is what ``smartsession report`` writes and ``Report.to_html()`` returns: the values are
computed here, the markup is ``templates/report.html`` (Jinja2, autoescape).
"""

from __future__ import annotations

import datetime as dt
import functools

import plotly.io as pio
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from smartsession.markup import templates
from smartsession.schema import STATES

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:24px;color:#212529;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #dee2e6}
.meta{color:#6c757d}.facts{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.fact{background:#f1f5f4;border-radius:8px;padding:8px 14px}.fact b{display:block;font-size:1.3rem}
table{border-collapse:collapse;width:100%;font-size:.92rem}th,td{padding:6px 8px;border-bottom:1px solid #e9ecef;
text-align:left;vertical-align:top}th{background:#f8f9fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.thin td{color:#5c636a;font-style:italic}.note{color:#8a4500}
details{margin-top:1rem;border:1px solid #dee2e6;border-radius:8px;padding:8px 12px}
summary{cursor:pointer;font-weight:600}.method{font-size:.88rem;color:#495057}
:focus-visible{outline:3px solid #1a5fb4;outline-offset:2px}
figure{margin:0}figcaption{font-size:.92rem;color:#343a40}figcaption details{margin-top:.4rem}
"""

#: Re-lay out plots inside a <details> when it opens: plotly cannot measure a hidden container.
RESIZE_JS = """
document.querySelectorAll('details').forEach(function(d){d.addEventListener('toggle',function(){
if(d.open){d.querySelectorAll('.plotly-graph-div').forEach(function(g){Plotly.Plots.resize(g);});}});});
"""


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    return get_plotlyjs()


def _figure_html(fig, div_id: str) -> str:
    return pio.to_html(
        fig,
        include_plotlyjs=False,
        full_html=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )


def _chart(fig, div_id: str, words: str, header: list[str], rows) -> dict:
    """A chart with its text alternative: the same numbers in a sentence and in a table behind a click."""
    return {"figure": Markup(_figure_html(fig, div_id)), "id": div_id, "words": words, "header": header,
            "rows": [[str(c) for c in row] for row in rows]}


def _engagement_chart(report, fig) -> dict:
    s = report.class_series
    smoothed = s["smoothed"].dropna() if len(s) else s
    words = "Class engagement over time: no measurements."
    if len(smoothed):
        words = (
            f"Class engagement over time: the smoothed class engagement went from {smoothed.iloc[0]:.0f} to "
            f"{smoothed.iloc[-1]:.0f}, between {smoothed.min():.0f} and {smoothed.max():.0f} "
            f"(session baseline {_fmt(report.baseline)}), with {int(s['students'].min())} to "
            f"{int(s['students'].max())} students present; {len(report.drops)} drop(s) and "
            f"{len(report.peaks)} peak(s), listed in the text of this report."
        )
    rows = (
        (_mmss(r.t - report.t0), _fmt(r.engagement), _fmt(r.smoothed), int(r.students))
        for r in s.itertuples()
    )
    header = ["time", "class mean", "smoothed", "students present"]
    return _chart(fig, "engagement-figure", words, header, rows)


def _states_chart(report, fig) -> dict:
    seg = report.segments.sort_values("start")
    seg = seg[seg["shown"].astype(bool)]
    rows = [
        [r.title] + [_fmt(getattr(r, f"share_{st}") * 100) + "%" for st in STATES] for r in seg.itertuples()
    ]
    words = "Share of students in each state, per segment (also in the segments table above): " + "; ".join(
        f"{row[0]}: " + ", ".join(f"{st} {v}" for st, v in zip(STATES, row[1:]) if v not in ("-%", "0%"))
        for row in rows
    ) + "."
    return _chart(fig, "states-figure", words, ["segment", *STATES], rows)


def _students_chart(report, fig) -> dict:
    b = report.student_series
    rows = []
    if len(b):
        stats = b.groupby("student_id")["engagement"].agg(["mean", "min", "max", "count"])
        for sid in sorted(stats.index, key=lambda i: report.labels.get(i, i)):
            st = stats.loc[sid]
            minutes = st["count"] * report.settings.bin_s / 60
            rows.append((report.labels.get(sid, sid), _fmt(st["mean"]), _fmt(st["min"]), _fmt(st["max"]),
                         f"{minutes:.1f}"))
    words = (
        f"Each student's engagement over time, one row per student ({len(rows)} students); "
        "the table gives each student's mean, lowest and highest engagement and minutes measured."
    )
    header = ["student", "mean", "lowest", "highest", "minutes measured"]
    return _chart(fig, "students-figure", words, header, rows)


def _fmt(value, spec: str = ".0f", empty: str = "-") -> str:
    return empty if value is None or value != value else format(value, spec)


def _mmss(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


def render(report) -> str:
    """The report page."""
    title = report.title or f"Session {report.session_id}".strip()
    when = (
        dt.datetime.fromtimestamp(report.t0, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        if not report.empty
        else ""
    )
    page = {"title": title, "when": when, "css": Markup(CSS), "plotly_js": Markup(_plotly_js()),
            "empty": report.empty, "method": _method(report)}
    if not report.empty:
        figs = report.figures()
        shown = report.segments["shown"].any()
        page.update(
            facts=_facts(report), drops=_drops(report), no_drops=_no_drops(report.settings),
            engagement=_engagement_chart(report, figs["engagement"]), segments=_segments(report),
            peaks=_peaks(report), states=_states_chart(report, figs["states"]) if shown else None,
            n_students=report.n_students, anonymised=report._anonymised,
            students=_students_chart(report, figs["students"]), resize_js=Markup(RESIZE_JS),
            checkins=_checkins(report), agreement=_agreement(report),
        )
    return templates("smartsession.report").get_template("report.html").render(page)


def _facts(report) -> list[tuple[str, str]]:
    return [
        (str(report.n_students), "students"),
        (f"{report.minutes:.0f}", "minutes of data"),
        (f"{report.messages:,}", "measurements"),
        (_fmt(report.baseline), "session baseline (median engagement)"),
        (str(len(report.segments)), "fixed windows" if report.windows else "segments"),
    ]


def _no_drops(s) -> str:
    return (f"No moment where the smoothed class engagement fell by more than {s.min_drop:g} points "
            f"(and {s.threshold:g} standard errors) within {s.window_s:g} s.")


def _drops(report) -> list[dict]:
    s = report.settings
    return [
        {"at": _mmss(d.offset_s), "clock": report.clock(d.t), "segment": report.segment_title(d.segment_id),
         "drop": f"{d.drop:.0f}", "before": f"{d.before:.0f}", "after": f"{d.after:.0f}", "involved": d.involved,
         "students": d.students, "student_drop": f"{s.student_drop:g}"}
        for d in report.drops.itertuples()
    ]


def _segments(report) -> dict:
    s = report.settings
    kind = "window" if report.windows else "segment"
    rows = []
    for r in report.ranked_segments().itertuples():
        start, end = r.start - report.t0, r.end - report.t0
        rows.append({
            "rank": _fmt(r.rank), "title": r.title, "time": f"{_mmss(start)}-{_mmss(end)}", "students": r.students,
            "data_minutes": f"{r.data_minutes:.1f}", "student_minutes": f"{r.student_minutes:.1f}",
            "mean": _fmt(r.mean), "spread": _fmt(r.spread), "drop": _fmt(r.drop, "+.0f"), "states": _top_states(r),
            "note": r.note,
        })
    return {
        "heading": f"{'Windows' if report.windows else 'Segments'}, biggest drop below the baseline first",
        "note": f"Drop = session baseline ({_fmt(report.baseline)}) minus the {kind}'s mean. "
                f"Mean and spread average each student's own mean, so every student weighs the same. "
                f"{kind.capitalize()}s with fewer than {s.min_group} students show counts only.",
        "kind": kind,
        "rows": rows,
    }


def _checkins(report) -> list[dict]:
    means = dict(zip(report.segments["segment_id"], report.segments["mean"])) if len(report.segments) else {}
    rows = []
    for c in report.checkins:
        rows.append({
            "segment": report.segment_title(c["segment"]) if c["segment"] else "before the first segment",
            "mean": _fmt(means.get(c["segment"])), "question": c["question"], "answered": c["answered"],
            "answers": ", ".join(f"{o}: {n}" for o, n in zip(c["options"], c["counts"])),
        })
    return rows


def _agreement(report) -> dict:
    a = report.agreement or {}
    table = a.get("table") or {}
    return {
        "window": f"{report.settings.answer_window_s:g}", "n": a.get("n", 0), "min_group": a.get("min_group", 0),
        "enough": a.get("enough", False), "no_camera": a.get("no_camera", 0),
        "share": _fmt(None if a.get("agreement") is None else 100 * a["agreement"]) + "%",
        "kappa": _fmt(a.get("kappa"), ".2f"),
        "rows": [(said, [table.get(said, {}).get(cam, 0) for cam in ("attending", "not attending")])
                 for said in ("attending", "not attending")],
    }


def _top_states(row) -> str:
    shares = [(getattr(row, f"share_{s}"), s) for s in STATES]
    shares = sorted(((v, s) for v, s in shares if v == v and v >= 0.05), reverse=True)[:3]
    return ", ".join(f"{s} {v * 100:.0f}%" for v, s in shares)


def _peaks(report) -> list[dict]:
    return [
        {"at": _mmss(p.offset_s), "segment": report.segment_title(p.segment_id), "engagement": f"{p.engagement:.0f}",
         "above": f"{p.above_baseline:+.0f}", "students": p.students}
        for p in report.peaks.itertuples()
    ]


def _method(report) -> str:
    s = report.settings
    return (
        f"Each student's measurements (paused time left out) are averaged in {s.bin_s:g}-second bins; the class "
        f"series is the mean of the students present in each bin, smoothed with a rolling median of "
        f"{s.smooth_bins} bins. A drop is a bin where the mean of the next {s.window_s:g} s falls below the "
        f"mean of the previous {s.window_s:g} s by more than max({s.min_drop:g} points, {s.threshold:g} x "
        f"standard errors of that difference, from the spread between students); drops closer than {s.window_s:g} s keep the largest. Peaks are the "
        f"highest local maxima of the smoothed series, {s.window_s:g} s apart and {s.min_drop:g}+ points above "
        "the baseline. "
        + (f"The session had no lecture segments, so fixed {s.window_min:g}-minute windows stand in. "
           if report.windows else "")
        + "Details and the code: docs/REPORT.md and notebooks/05_session_report.ipynb."
    )
