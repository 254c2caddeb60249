"""The report's plotly figures, made from a built ``Report`` (no analysis happens here).

The same figures go into the HTML report, the teacher dashboard's Report view and the notebook.
"""

from __future__ import annotations

import plotly.graph_objects as go

from smartsession.palette import STATE_COLOURS, STATE_PATTERNS
from smartsession.schema import STATES

#: One colour and one bar pattern per state, the same as on the live pages (colour-vision-deficiency safe).
STATE_COLORS = STATE_COLOURS
BAND_COLORS = ("rgba(42,157,143,0.08)", "rgba(38,70,83,0.08)")
FONT = dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=13)


def _minutes(report, t):
    return (t - report.t0) / 60


def engagement_figure(report) -> go.Figure:
    """Class engagement over time with segment bands, students present, drops and peaks marked."""
    fig = go.Figure()
    s = report.class_series
    x = _minutes(report, s["t"]) if len(s) else []
    shapes, notes = [], []
    for i, row in enumerate(report.segments.sort_values("start").itertuples()):
        x0, x1 = _minutes(report, row.start), _minutes(report, row.end)
        # Plain layout dicts: add_vrect validates each band at length, seconds for a long lesson.
        shapes.append(dict(type="rect", xref="x", yref="paper", x0=x0, x1=x1, y0=0, y1=1,
                           fillcolor=BAND_COLORS[i % 2], line_width=0, layer="below"))
        label = row.title if not row.note or row.shown else f"{row.title} ({row.note.split(':')[0]})"
        notes.append(dict(x=x0, y=1, xref="x", yref="paper", text=label, showarrow=False,
                          xanchor="left", yanchor="top", font=dict(size=11)))
    fig.update_layout(shapes=shapes, annotations=notes)
    if len(s):
        fig.add_trace(
            go.Scatter(
                x=x, y=s["engagement"], name=f"class mean per {report.settings.bin_s:g} s",
                mode="lines", line=dict(color="rgba(38,70,83,0.3)", width=1), connectgaps=False,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x, y=s["smoothed"], name="smoothed (rolling median)",
                mode="lines", line=dict(color="#264653", width=3), connectgaps=False,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x, y=s["students"], name="students present", yaxis="y2",
                mode="lines", line=dict(color="#adb5bd", width=1, shape="hv", dash="dot"),
            )
        )
    if len(report.drops):
        d = report.drops
        fig.add_trace(
            go.Scatter(
                x=_minutes(report, d["t"]), y=d["after"], name="drops", mode="markers+text",
                marker=dict(symbol="triangle-down", size=14, color="#e76f51"),
                text=[f"-{v:.0f}" for v in d["drop"]], textposition="bottom center",
                customdata=d[["involved", "students"]],
                hovertemplate="drop of %{text} points at %{x:.1f} min<br>%{customdata[0]} of %{customdata[1]} students fell<extra></extra>",
            )
        )
    if len(report.peaks):
        p = report.peaks
        fig.add_trace(
            go.Scatter(
                x=_minutes(report, p["t"]), y=p["engagement"], name="peaks", mode="markers",
                marker=dict(symbol="triangle-up", size=12, color="#2a9d8f"),
                hovertemplate="peak %{y:.0f} at %{x:.1f} min<extra></extra>",
            )
        )
    if report.baseline == report.baseline:  # not NaN
        fig.add_hline(
            y=report.baseline, line=dict(color="#6c757d", dash="dash", width=1),
            annotation_text=f"session baseline {report.baseline:.0f}", annotation_position="bottom right",
        )
    fig.update_layout(
        title="Class engagement over time",
        xaxis=dict(title="minutes since the start", zeroline=False),
        yaxis=dict(title="engagement (0-100)", range=[0, 105]),
        yaxis2=dict(
            title="students", overlaying="y", side="right", showgrid=False, tickformat="d",
            range=[0, max(1, int(s["students"].max()) if len(s) else 1) * 1.6],  # keep the count below the curve
        ),
        legend=dict(orientation="h", y=-0.2),
        height=440, margin=dict(l=60, r=60, t=60, b=40), font=FONT, template="plotly_white",
    )
    return fig


def states_figure(report) -> go.Figure:
    """Share of students in each state per segment (segments below the group size left out)."""
    seg = report.segments.sort_values("start")
    seg = seg[seg["shown"].astype(bool)]
    fig = go.Figure()
    for state in STATES:
        col = f"share_{state}"
        if col in seg and seg[col].fillna(0).sum() > 0:
            fig.add_trace(
                go.Bar(
                    y=seg["title"], x=seg[col] * 100, name=state, orientation="h",
                    marker=dict(color=STATE_COLORS[state], pattern=dict(shape=STATE_PATTERNS[state], fgcolor="#263238")),
                    hovertemplate=f"{state}: %{{x:.0f}}%<extra>%{{y}}</extra>",
                )
            )
    fig.update_layout(
        title="Share of students in each state, per segment",
        barmode="stack", xaxis=dict(title="% of time (students weigh the same)", range=[0, 100]),
        yaxis=dict(autorange="reversed"), height=max(220, 60 + 40 * len(seg)),
        margin=dict(l=160, r=20, t=90, b=50), font=FONT, template="plotly_white",
        legend=dict(orientation="h", y=1.0, yanchor="bottom", traceorder="normal"),
    )
    return fig


def students_figure(report) -> go.Figure:
    """Per-student engagement timelines as a heatmap, one row per (anonymised) student."""
    b = report.student_series
    fig = go.Figure()
    if len(b):
        grid = b.pivot_table(index="student_id", columns="bin", values="engagement")
        order = sorted(grid.index, key=lambda sid: report.labels.get(sid, sid))
        grid = grid.loc[order]
        fig.add_trace(
            go.Heatmap(
                z=grid.to_numpy(), x=(grid.columns.to_numpy() * report.settings.bin_s) / 60,
                y=[report.labels.get(sid, sid) for sid in grid.index],
                zmin=0, zmax=100, colorscale="Cividis", colorbar=dict(title="engagement"),
                hovertemplate="%{y} at %{x:.1f} min: %{z:.0f}<extra></extra>",
            )
        )
    fig.update_layout(
        title="Each student's engagement (blank: not connected or paused)",
        xaxis=dict(title="minutes since the start"), yaxis=dict(autorange="reversed"),
        height=max(240, 80 + 18 * report.n_students), margin=dict(l=110, r=20, t=60, b=40),
        font=FONT, template="plotly_white",
    )
    return fig

