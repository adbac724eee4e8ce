"""``muckwatch report``: one self-contained HTML file an officer or analyst can open offline.

A map drawn as SVG from the city bundle (fences by kind, permit corridors) with every
violation of the period as a marker coloured by rule; clicking one shows plate, company and
times and draws its evidence track. Filters by rule and company, violations per hour, and the
credit score table. No tile server, no CDN, no network: everything is inline.
"""

from __future__ import annotations

import html
import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import shapely

from domain.city import City

RULE_COLOURS = {"OFF_ROUTE": "#d95f02", "UNAUTHORISED_DUMP": "#b2182b",
                "UNCOVERED_LOAD": "#7570b3", "RESTRICTED_ZONE": "#e7298a",
                "NO_PERMIT": "#1b9e77", "OVERSPEED": "#e6ab02", "SIGNAL_LOSS": "#666666",
                "WRONG_DESTINATION": "#66a61e", "TRIP_NOT_CLOSED": "#a6761d",
                "OVERLOAD": "#386cb0", "PERMIT_VOLUME_EXCEEDED": "#f0027f",
                "TERMINAL_TAMPER": "#bf5b17"}
KIND_COLOURS = {"construction_site": "#fdae61", "disposal_site": "#a6d96a",
                "transfer_dock": "#74add1", "restricted_zone": "#f4a6a6"}
WIDTH = 1200
TRACK_LIMIT = 400  # evidence points drawn per violation
DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([mhd])")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """'24h', '7d', '90m' (ago) or an ISO 8601 date/time → an aware datetime."""
    now = now or datetime.now(UTC)
    m = DURATION.fullmatch(text.strip())
    if m:
        value, unit = float(m.group(1)), m.group(2)
        return now - timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: value})
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: expected e.g. 24h, 7d, 90m or 2026-11-30") \
            from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class _Projection:
    """lon/lat → SVG pixels: equirectangular around the city, north up."""

    def __init__(self, bounds: tuple[float, float, float, float]) -> None:
        west, south, east, north = bounds
        self.west, self.north = west, north
        self.kx = math.cos(math.radians((south + north) / 2))
        span = max((east - west) * self.kx, 1e-9)
        self.scale = WIDTH / span
        self.height = max(1, round((north - south) * self.scale))

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        return ((lon - self.west) * self.kx * self.scale, (self.north - lat) * self.scale)

    def path(self, geom) -> str:
        parts = []
        for poly in getattr(geom, "geoms", [geom]):
            for ring in [poly.exterior, *poly.interiors]:
                pts = [self.xy(x, y) for x, y in ring.coords]
                parts.append("M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in pts) + "Z")
        return "".join(parts)

    def points(self, line) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in (self.xy(*c[:2]) for c in line.coords))


def _violations(conn: psycopg.Connection, since: datetime, until: datetime) -> list[dict]:
    rows = conn.execute(
        "SELECT id, rule, severity, device_id, plate, company_id, start_ts, end_ts, start_lon,"
        " start_lat, state, late, evidence FROM violations WHERE start_ts >= %s"
        " AND start_ts < %s AND state <> 'retracted' ORDER BY start_ts", (since, until)
    ).fetchall()
    out = []
    for vid, rule, sev, device, plate, company, start, end, lon, lat, state, late, ev in rows:
        track = [(p["lon"], p["lat"]) for p in (ev or [])
                 if p.get("lon") is not None and p.get("lat") is not None]
        if not track and lon is not None:
            track = conn.execute(
                "SELECT lon, lat FROM telemetry WHERE device_id = %s AND ts BETWEEN %s AND %s"
                " ORDER BY ts LIMIT %s",
                (device, start - timedelta(minutes=2),
                 (end or start + timedelta(minutes=10)) + timedelta(minutes=2), TRACK_LIMIT)
            ).fetchall()
        out.append({"id": vid, "rule": rule, "severity": sev, "device": device,
                    "plate": plate or "", "company": company or "", "start": start,
                    "end": end, "lon": lon, "lat": lat, "state": state, "late": late,
                    "track": track[:TRACK_LIMIT]})
    return out


def _scores(conn: psycopg.Connection, until: datetime) -> list[tuple]:
    from store.scores import company_scores

    try:
        return company_scores(conn, until)
    except psycopg.Error:
        conn.rollback()
        return []


def build(conn: psycopg.Connection, city: City, since: datetime,
          until: datetime | None = None) -> str:
    """The report as one HTML string."""
    until = until or datetime.now(UTC)
    violations = _violations(conn, since, until)
    scores = _scores(conn, until)
    shapes = [f.geometry for f in city.fences] + [p.route for p in city.permits]
    points = [shapely.Point(v["lon"], v["lat"]) for v in violations if v["lon"] is not None]
    bounds = shapely.GeometryCollection(shapes + points).bounds if shapes or points \
        else (113.8, 22.4, 114.4, 22.8)
    pad = 0.01
    proj = _Projection((bounds[0] - pad, bounds[1] - pad, bounds[2] + pad, bounds[3] + pad))
    metres = proj.scale / 111_320  # pixels per metre

    fences = "\n".join(
        f'<path class="fence kind-{html.escape(f.kind)}" fill="{KIND_COLOURS.get(f.kind, "#ccc")}"'
        f' d="{proj.path(f.geometry.simplify(1e-5))}"><title>{html.escape(f.name or f.id)}'
        f" ({html.escape(f.kind.replace('_', ' '))})</title></path>" for f in city.fences)
    corridors = "\n".join(
        f'<polyline class="corridor" points="{proj.points(p.route)}" '
        f'stroke-width="{max(1.0, 2 * p.corridor_m * metres):.1f}">'
        f"<title>permit {html.escape(p.id)} ({html.escape(p.plate)})</title></polyline>"
        for p in city.permits)
    markers = []
    for v in violations:
        if v["lon"] is None:
            continue
        x, y = proj.xy(v["lon"], v["lat"])
        track = ";".join(f"{a:.1f},{b:.1f}" for a, b in (proj.xy(lo, la) for lo, la in v["track"]))
        data = {"id": v["id"], "rule": v["rule"], "plate": v["plate"], "company": v["company"],
                "device": v["device"], "severity": str(v["severity"]), "state": v["state"],
                "start": v["start"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
                "end": v["end"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                if v["end"] else "still open", "late": "yes" if v["late"] else "no",
                "track": track}
        attrs = " ".join(f'data-{k}="{html.escape(str(val))}"' for k, val in data.items())
        markers.append(f'<circle class="violation rule-{html.escape(v["rule"])}" cx="{x:.1f}" '
                       f'cy="{y:.1f}" r="6" fill="{RULE_COLOURS.get(v["rule"], "#000")}" '
                       f"{attrs}></circle>")

    hours = int(max(1, math.ceil((until - since).total_seconds() / 3600)))
    per_hour = [0] * hours
    for v in violations:
        k = int((v["start"] - since).total_seconds() // 3600)
        if 0 <= k < hours:
            per_hour[k] += 1
    peak = max(per_hour) or 1
    bar_w = max(2.0, min(30.0, 1100 / hours))
    bars = "".join(
        f'<rect class="hour" x="{40 + k * bar_w:.1f}" y="{150 - 130 * n / peak:.1f}" '
        f'width="{bar_w * 0.8:.1f}" height="{130 * n / peak:.1f}"><title>'
        f"{(since + timedelta(hours=k)).strftime('%m-%d %H:00')} UTC: {n}</title></rect>"
        for k, n in enumerate(per_hour))
    rules = sorted({v["rule"] for v in violations})
    companies = sorted({v["company"] for v in violations if v["company"]})
    rule_filters = "".join(
        f'<label><input type="checkbox" class="rule-filter" value="{html.escape(r)}" checked>'
        f'<span class="swatch" style="background:{RULE_COLOURS.get(r, "#000")}"></span>'
        f"{html.escape(r)} ({sum(1 for v in violations if v['rule'] == r)})</label>"
        for r in rules)
    company_options = "".join(f'<option value="{html.escape(c)}">{html.escape(c)}</option>'
                              for c in companies)
    score_rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
        for row in scores)
    legend = "".join(f'<span class="swatch" style="background:{c}"></span>'
                     f"{html.escape(k.replace('_', ' '))} " for k, c in KIND_COLOURS.items())
    title = (f"{html.escape(city.name)} — violations {since.strftime('%Y-%m-%d %H:%M')} to "
             f"{until.strftime('%Y-%m-%d %H:%M')} UTC")
    return _TEMPLATE.format(
        title=title, width=WIDTH, height=proj.height, fences=fences, corridors=corridors,
        markers="\n".join(markers), count=len(markers), rule_filters=rule_filters,
        company_options=company_options, bars=bars, score_rows=score_rows, legend=legend,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        summary=html.escape(json.dumps({"violations": len(violations), "rules": rules})))


def write(conn: psycopg.Connection, city: City, since: datetime, out: Path) -> int:
    """Write the report to ``out``; returns the number of violation markers."""
    text = build(conn, city, since)
    out.write_text(text, encoding="utf-8")
    return text.count('class="violation ')


_TEMPLATE = """<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 16px; color: #222; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin-top: 24px; }}
#map {{ border: 1px solid #999; background: #f7f7f2; max-width: 100%; height: auto; }}
.fence {{ fill-opacity: .55; stroke: #555; stroke-width: .5; }}
.corridor {{ fill: none; stroke: #4575b4; stroke-opacity: .18; stroke-linecap: round; }}
.violation {{ stroke: #fff; stroke-width: 1.5; cursor: pointer; }}
.violation.selected {{ stroke: #000; stroke-width: 3; }}
#track {{ fill: none; stroke: #000; stroke-width: 2; stroke-dasharray: 4 2; }}
#popup {{ position: absolute; display: none; background: #fff; border: 1px solid #333;
  padding: 8px 10px; box-shadow: 2px 2px 6px rgba(0,0,0,.3); max-width: 320px; }}
.swatch {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px; }}
.filters label {{ margin-right: 12px; white-space: nowrap; }}
.hour {{ fill: #4575b4; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; }}
</style></head>
<body>
<h1>{title}</h1>
<p id="summary" data-summary="{summary}">{count} violations on the map · generated {generated}
 · fences: {legend}</p>
<div class="filters">Rules: {rule_filters}
 Company: <select id="company-filter"><option value="">all</option>{company_options}</select>
</div>
<svg id="map" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"
 viewBox="0 0 {width} {height}">
<g id="fences">{fences}</g>
<g id="corridors">{corridors}</g>
<polyline id="track" points=""></polyline>
<g id="violations">{markers}</g>
</svg>
<div id="popup"></div>
<h2>Violations per hour</h2>
<svg id="per-hour" width="1200" height="160" xmlns="http://www.w3.org/2000/svg">
<line x1="40" y1="150" x2="1160" y2="150" stroke="#999"></line>{bars}</svg>
<h2>Credit scores</h2>
<table id="scores"><tr><th>company</th><th>name</th><th>vehicles</th><th>violations</th>
<th>deductions</th><th>score</th><th>grade</th></tr>{score_rows}</table>
<script>
(function () {{
  const popup = document.getElementById('popup');
  const track = document.getElementById('track');
  const marks = Array.from(document.querySelectorAll('circle.violation'));
  function show(c, ev) {{
    marks.forEach(m => m.classList.remove('selected'));
    c.classList.add('selected');
    const d = c.dataset;
    popup.replaceChildren();
    function line(text, tag) {{
      const e = document.createElement(tag || 'div');
      e.textContent = text;  // never markup: plates and names come from the database
      popup.appendChild(e);
    }}
    line(d.rule + ' (severity ' + d.severity + ', ' + d.state +
         (d.late === 'yes' ? ', late data' : '') + ')', 'b');
    line('plate ' + d.plate + ' · company ' + d.company);
    line('device ' + d.device);
    line('from ' + d.start);
    line('to ' + d.end);
    line(d.id, 'small');
    popup.style.display = 'block';
    popup.style.left = (ev ? ev.pageX + 12 : 40) + 'px';
    popup.style.top = (ev ? ev.pageY + 12 : 120) + 'px';
    track.setAttribute('points', d.track.split(';').join(' '));
  }}
  marks.forEach(c => c.addEventListener('click', ev => show(c, ev)));
  function filter() {{
    const rules = new Set(Array.from(document.querySelectorAll('.rule-filter'))
      .filter(b => b.checked).map(b => b.value));
    const company = document.getElementById('company-filter').value;
    marks.forEach(c => {{
      const on = rules.has(c.dataset.rule) && (!company || c.dataset.company === company);
      c.style.display = on ? '' : 'none';
    }});
  }}
  document.querySelectorAll('.rule-filter').forEach(b => b.addEventListener('change', filter));
  document.getElementById('company-filter').addEventListener('change', filter);
  if (location.hash.startsWith('#show=')) {{
    const c = marks.find(m => m.dataset.id === decodeURIComponent(location.hash.slice(6)));
    if (c) show(c, null);
  }} else if (marks.length) {{ show(marks[marks.length - 1], null); }}
  document.body.dataset.ready = marks.length;
}})();
</script>
</body></html>
"""

__all__ = ["build", "parse_since", "write"]
