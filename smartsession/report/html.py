"""The report as one self-contained HTML page: plotly.js inlined once, no CDN, opens offline.

``render(report)`` is what ``smartsession report`` writes and ``Report.to_html()`` returns.
"""

from __future__ import annotations

import datetime as dt
import functools
from html import escape

import plotly.io as pio
from plotly.offline import get_plotlyjs

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


def _chart(fig, div_id: str, words: str, table: str) -> str:
    """A chart with its text alternative: the same numbers in a sentence and in a table behind a click."""
    return (
        f"<figure>{_figure_html(fig, div_id)}<figcaption id='{div_id}-text'>{escape(words)}"
        f"<details><summary>The numbers of this chart</summary>{table}</details></figcaption></figure>"
    )


def _table(header: list[str], rows) -> str:
    head = "".join(f"<th scope='col'>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _engagement_chart(report, fig) -> str:
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
    return _chart(fig, "engagement-figure", words, _table(header, rows))


def _states_chart(report, fig) -> str:
    seg = report.segments.sort_values("start")
    seg = seg[seg["shown"].astype(bool)]
    rows = [
        [r.title] + [_fmt(getattr(r, f"share_{st}") * 100) + "%" for st in STATES] for r in seg.itertuples()
    ]
    words = "Share of students in each state, per segment (also in the segments table above): " + "; ".join(
        f"{row[0]}: " + ", ".join(f"{st} {v}" for st, v in zip(STATES, row[1:]) if v not in ("-%", "0%"))
        for row in rows
    ) + "."
    return _chart(fig, "states-figure", words, _table(["segment", *STATES], rows))


def _students_chart(report, fig) -> str:
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
    return _chart(fig, "students-figure", words, _table(header, rows))


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
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{escape(title)} - SmartSession report</title><style>{CSS}</style>",
        f"<script type='text/javascript'>{_plotly_js()}</script></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p class='meta'>Session report{' - ' + escape(when) if when else ''}. "
        "Engagement is an estimate from webcam attention signals (0-100); read it as a trend of the "
        "class, not as a grade of any student.</p>",
    ]
    if report.empty:
        parts.append(
            "<p><b>This session has no measurements.</b> No student published a state while it was open "
            "(or every student was paused), so there is nothing to report.</p>"
        )
        parts.append(_method(report))
        parts.append("</body></html>")
        return "".join(parts)

    figs = report.figures()
    parts += [_facts(report), _drops(report), _engagement_chart(report, figs["engagement"])]
    parts += [_segments(report), _peaks(report)]
    if report.segments["shown"].any():
        parts.append(_states_chart(report, figs["states"]))
    parts += [
        f"<details id='students'><summary>Per-student timelines ({report.n_students} students"
        f"{', anonymised' if report._anonymised else ''}) - click to show</summary>",
        _students_chart(report, figs["students"]),
        "</details>",
        _method(report),
        f"<script>{RESIZE_JS}</script></body></html>",
    ]
    return "".join(parts)


def _facts(report) -> str:
    facts = [
        (str(report.n_students), "students"),
        (f"{report.minutes:.0f}", "minutes of data"),
        (f"{report.messages:,}", "measurements"),
        (_fmt(report.baseline), "session baseline (median engagement)"),
        (str(len(report.segments)), "fixed windows" if report.windows else "segments"),
    ]
    cells = "".join(f"<div class='fact'><b>{escape(v)}</b>{escape(k)}</div>" for v, k in facts)
    return f"<div class='facts'>{cells}</div>"


def _drops(report) -> str:
    s = report.settings
    out = ["<h2>Where the class lost interest</h2>"]
    if report.drops.empty:
        out.append(
            f"<p>No moment where the smoothed class engagement fell by more than {s.min_drop:g} points "
            f"(and {s.threshold:g} standard errors) within {s.window_s:g} s.</p>"
        )
        return "".join(out)
    out.append("<ol id='drops'>")
    for d in report.drops.itertuples():
        out.append(
            f"<li><b>{_mmss(d.offset_s)}</b> into the session ({escape(report.clock(d.t))}), during "
            f"<b>{escape(report.segment_title(d.segment_id))}</b>: engagement fell "
            f"<b>{d.drop:.0f} points</b> (from {d.before:.0f} to {d.after:.0f}); "
            f"{d.involved} of the {d.students} students present fell by {s.student_drop:g}+ points.</li>"
        )
    out.append("</ol>")
    return "".join(out)


def _segments(report) -> str:
    s = report.settings
    kind = "window" if report.windows else "segment"
    out = [
        f"<h2>{'Windows' if report.windows else 'Segments'}, biggest drop below the baseline first</h2>",
        f"<p class='meta'>Drop = session baseline ({_fmt(report.baseline)}) minus the {kind}'s mean. "
        f"Mean and spread average each student's own mean, so every student weighs the same. "
        f"{kind.capitalize()}s with fewer than {s.min_group} students show counts only.</p>",
        "<table id='segments'><thead><tr><th>#</th><th>" + kind + "</th><th>time</th><th>students</th>"
        "<th>minutes of data</th><th>student-minutes</th><th>mean</th><th>spread (sd)</th><th>drop</th>"
        "<th>most common states</th><th></th></tr></thead><tbody>",
    ]
    for r in report.ranked_segments().itertuples():
        states = _top_states(r)
        start, end = r.start - report.t0, r.end - report.t0
        out.append(
            f"<tr class='{'thin' if r.note else ''}'><td>{_fmt(r.rank)}</td><td>{escape(r.title)}</td>"
            f"<td>{_mmss(start)}-{_mmss(end)}</td><td class='num'>{r.students}</td>"
            f"<td class='num'>{r.data_minutes:.1f}</td><td class='num'>{r.student_minutes:.1f}</td>"
            f"<td class='num'>{_fmt(r.mean)}</td><td class='num'>{_fmt(r.spread)}</td>"
            f"<td class='num'>{_fmt(r.drop, '+.0f')}</td><td>{escape(states)}</td>"
            f"<td class='note'>{escape(r.note)}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _top_states(row) -> str:
    shares = [(getattr(row, f"share_{s}"), s) for s in STATES]
    shares = sorted(((v, s) for v, s in shares if v == v and v >= 0.05), reverse=True)[:3]
    return ", ".join(f"{s} {v * 100:.0f}%" for v, s in shares)


def _peaks(report) -> str:
    if report.peaks.empty:
        return ""
    out = ["<h2>When the class was most engaged</h2><ul id='peaks'>"]
    for p in report.peaks.itertuples():
        out.append(
            f"<li><b>{_mmss(p.offset_s)}</b> ({escape(report.segment_title(p.segment_id))}): "
            f"{p.engagement:.0f} ({p.above_baseline:+.0f} vs baseline), {p.students} students present</li>"
        )
    out.append("</ul>")
    return "".join(out)


def _method(report) -> str:
    s = report.settings
    return (
        "<h2>How this was computed</h2><p class='method'>"
        f"Each student's measurements (paused time left out) are averaged in {s.bin_s:g}-second bins; the class "
        f"series is the mean of the students present in each bin, smoothed with a rolling median of "
        f"{s.smooth_bins} bins. A drop is a bin where the mean of the next {s.window_s:g} s falls below the "
        f"mean of the previous {s.window_s:g} s by more than max({s.min_drop:g} points, {s.threshold:g} x "
        f"standard errors of that difference, from the spread between students); drops closer than {s.window_s:g} s keep the largest. Peaks are the "
        f"highest local maxima of the smoothed series, {s.window_s:g} s apart and {s.min_drop:g}+ points above "
        "the baseline. "
        + (f"The session had no lecture segments, so fixed {s.window_min:g}-minute windows stand in. "
           if report.windows else "")
        + "Details and the code: docs/REPORT.md and notebooks/05_session_report.ipynb.</p>"
    )
