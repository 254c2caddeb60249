"""What the teacher page shows, as pure functions: data in, markup or words out (no widgets, no kernel, no network).

The markup comes from ``templates/teacher.html`` through Jinja2 with autoescape, so every name, title and
reason a student or teacher typed is escaped by default; ``pages.teacher`` puts the results into widgets.
"""

from __future__ import annotations

import io
import os
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import qrcode
import qrcode.image.svg
from markupsafe import Markup

from smartsession.markup import templates
from smartsession.pages.alerts import Alert
from smartsession.palette import colour_of, symbol_of
from smartsession.schema import EMOTION_STATES, STATES

_PAGE = templates("smartsession.pages").get_template("teacher.html").module


def _clock(t: float, seconds: bool = False) -> str:
    return datetime.fromtimestamp(t).strftime("%H:%M:%S" if seconds else "%H:%M")


def join_url(class_id: str, join_code: str, environ: Any = os.environ) -> str | None:
    """The absolute student link, built from the host the teacher used to reach this page.

    Voila puts the request's host, port and path in the kernel's environment; the scheme is the hub's
    (``smartsession serve`` sets ``SMARTSESSION_HUB_URL``, https when it has a certificate).
    """
    host = environ.get("SERVER_NAME")
    if not host:
        return None
    port = environ.get("SERVER_PORT")
    scheme = urlsplit(environ.get("SMARTSESSION_HUB_URL", "http://")).scheme or "http"
    netloc = f"[{host}]" if ":" in host else host
    if port and (scheme, port) not in (("http", "80"), ("https", "443")):
        netloc += f":{port}"
    path = environ.get("SCRIPT_NAME") or "/voila/render/teacher.ipynb"
    path = path.rsplit("/", 1)[0] + "/student.ipynb"
    return f"{scheme}://{netloc}{path}?{urlencode({'class': class_id, 'join': join_code})}"


def qr_svg(text: str) -> str:
    """An inline SVG QR code (no image file, no CDN)."""
    img = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=6, border=2)
    buf = io.BytesIO()
    img.save(buf)
    svg = buf.getvalue().decode()
    return svg[svg.index("<svg"):]


def style_html() -> str:
    return str(_PAGE.style())


def header_html(text: str) -> str:
    return str(_PAGE.header(text))


def status_html(status: str, text: str) -> str:
    return str(_PAGE.status(status, text))


def notice_html(text: str) -> str:
    """Feedback on the teacher's last action; empty text, empty markup."""
    return str(_PAGE.notice(text))


def join_html(link: str | None) -> str:
    """The join panel: the QR code and the link, or how to get one when the hub sent no join code."""
    # The QR code is svg qrcode made from the link, never text from outside: safe to embed as markup.
    return str(_PAGE.join(link, Markup(qr_svg(link)) if link else ""))


def gauge_html(engagement: float | None) -> str:
    """The class gauge: a half ring filled to the class engagement."""
    value = None if engagement is None else max(0.0, min(100.0, engagement))
    length = 125.66  # half the circumference of r=40
    return str(_PAGE.gauge(
        data="" if value is None else round(value),
        words="no students measured yet" if value is None else f"{value:.0f} out of 100",
        label="–" if value is None else f"{value:.0f}",
        colour="#b0bec5" if value is None else ("#2e7d32" if value >= 60 else "#ef8f00" if value >= 40 else "#c62828"),
        filled=0 if value is None else length * value / 100,
        length=length,
    ))


def counts_html(counts: dict[str, int], emotions: bool) -> str:
    """Students per state (and paused, disconnected), each with its symbol; emotion states only when on."""
    items = [
        (state, counts.get(state, 0), colour_of(state), symbol_of(state))
        for state in STATES + ("paused", "disconnected")
        if emotions or state not in EMOTION_STATES
    ]
    return str(_PAGE.counts(items))


def alerts_html(alerts: list[Alert]) -> str:
    return str(_PAGE.alerts([(_clock(a.t), a) for a in alerts]))


def alerts_announcement(alerts: list[Alert]) -> str:
    """One sentence for a screen reader about alerts not read out yet (newest last)."""
    # The time makes each announcement new, so a condition that fires again later is read out again.
    at = _clock(alerts[-1].t)
    if len(alerts) == 1:
        return f"New alert at {at}: {alerts[0].message}"
    shown = "; ".join(a.message for a in alerts[-3:])
    more = f" ({len(alerts) - 3} more in the list)" if len(alerts) > 3 else ""
    return f"{len(alerts)} new alerts at {at}: {shown}{more}"


def chart_text(series: list[tuple[float, float]], bands: list[tuple[float, float, str]], now: float) -> str:
    """The class chart in words, with the numbers it draws: where engagement is, its range, the segments."""
    if not series:
        return "Class engagement chart: no measurements yet."
    values = [e for _, e in series]
    span = series[-1][0] - series[0][0]
    shown = f"{span:.0f} s" if span < 90 else f"{span / 60:.0f} min"
    parts = [
        f"Class engagement chart: now {values[-1]:.0f} out of 100; over the last {shown} "
        f"between {min(values):.0f} and {max(values):.0f}, mean {sum(values) / len(values):.0f}."
    ]
    if bands:
        segs = ", ".join(
            f"{title or 'untitled'} from {_clock(start)}" + (" (running)" if end >= now else f" to {_clock(end)}")
            for start, end, title in bands
        )
        parts.append(f"Segments: {segs}.")
    return " ".join(parts)


def chart_text_html(series: list[tuple[float, float]], bands: list[tuple[float, float, str]], now: float) -> str:
    return str(_PAGE.chart_text(chart_text(series, bands, now)))


def timeline_text(history: list[tuple[float, float, str]]) -> str:
    """One student's timeline in words: its span, engagement range and the share of time in each state."""
    if not history:
        return "No states yet."
    values = [e for _, e, _ in history]
    shares: dict[str, int] = {}
    for _, _, state in history:
        shares[state] = shares.get(state, 0) + 1
    states = ", ".join(f"{s} {n * 100 / len(history):.0f}%" for s, n in sorted(shares.items(), key=lambda kv: -kv[1]))
    start, end = (_clock(v, seconds=True) for v in (history[0][0], history[-1][0]))
    return (
        f"From {start} to {end}: engagement now {values[-1]:.0f}, between {min(values):.0f} and {max(values):.0f}; "
        f"time in each state: {states}."
    )


def timeline_svg(history: list[tuple[float, float, str]], width: int = 560, height: int = 120) -> str:
    """One student's engagement over time, each point drawn with its state's symbol and colour."""
    if not history:
        return str(_PAGE.no_timeline())
    t0, t1 = history[0][0], max(history[-1][0], history[0][0] + 1)
    x = lambda t: 30 + (t - t0) / (t1 - t0) * (width - 40)  # noqa: E731
    y = lambda e: 10 + (100 - e) / 100 * (height - 30)  # noqa: E731
    return str(_PAGE.timeline(
        width=width, height=height, words=timeline_text(history),
        line=" ".join(f"{x(t):.1f},{y(e):.1f}" for t, e, _ in history),
        # Symbols, not plain dots: the shape tells the state without its colour.
        dots=[(f"{x(t):.1f}", f"{y(e) + 3:.1f}", colour_of(s), symbol_of(s)) for t, e, s in history],
        y50=f"{y(50):.1f}", y100=f"{y(100) + 4:.1f}", y0=f"{y(0):.1f}",
        start=_clock(t0, seconds=True), end=_clock(t1, seconds=True),
    ))


def detail_html(history: list[tuple[float, float, str]]) -> str:
    """The selected student's timeline, drawn and in words."""
    return timeline_svg(history) + str(_PAGE.timeline_words(timeline_text(history)))


def detail_title_html(student_id: str, label: str, presence: str, state: str | None) -> str:
    return str(_PAGE.detail_title(student_id, label, presence, state))


def report_html(session_id: str, page: str) -> str:
    """The session report (a whole HTML document) in an iframe of its own."""
    return str(_PAGE.report(session_id, page))


def natural_key(label: str) -> list:
    """Sort key so that "Student 2" comes before "Student 10"."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", label.lower())]
