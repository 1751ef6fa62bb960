"""The read-only review packet: the workbook's content as one self-contained HTML file.

Everything is escaped (jinja2 autoescape); no scripts, fonts or images are loaded.
"""

from __future__ import annotations

from jinja2 import Environment

from .model import RunItems

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Review packet: {{ run.name }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;width:100%;margin-bottom:2em}
td,th{border:1px solid #ccc;padding:.3em .5em;vertical-align:top;text-align:left}
th{background:#f3f3f3} blockquote{margin:.2em 0 .2em 1em;color:#444}
.meta{color:#666;font-size:.9em}
</style></head><body>
<h1>Review packet: {{ run.name }}</h1>
<p class="meta">Round {{ round }}. Run id {{ run.run_id }}. Judges: {{ judges|join(", ") }}
{%- if auditors %}; auditor(s): {{ auditors|join(", ") }}{% endif %}.
This packet is read-only: decisions go in the workbooks.</p>
<h2>Domains</h2>
<table><tr><th>id</th><th>name</th><th>keywords</th><th>themes</th><th>cases</th><th>frequency</th></tr>
{% for d in domains %}<tr><td>{{ d.domain_id }}</td><td>{{ d.name }}</td><td>{{ d.keywords }}</td>
<td>{{ d.theme_ids }}</td><td>{{ d.n_cases }}</td><td>{{ d.frequency_label }}</td></tr>
{% endfor %}</table>
<h2>Themes</h2>
{% for t in themes %}
<h3>Theme {{ t.theme_id }}: {{ t.name }}</h3>
<p>Domain {{ t.domain_id }}. {{ t.n_cases }} cases ({{ t.frequency_label }}), {{ t.n_segments }} segments.
Keywords: {{ t.keywords }}</p>
<p><b>Core idea (proposed):</b> {{ t.core_idea }}</p>
{% for q in t.quotes %}<blockquote>{{ q.text }} <span class="meta">({{ q.case }}, {{ q.id }})</span></blockquote>{% endfor %}
{% endfor %}
<h2>Unassigned segments ({{ unassigned|length }})</h2>
<table><tr><th>segment id</th><th>case</th><th>text</th></tr>
{% for s in unassigned %}<tr><td>{{ s.segment_id }}</td><td>{{ s.case_id }}</td><td>{{ s.text }}</td></tr>
{% endfor %}</table>
</body></html>
"""


def render_packet(run: RunItems, round: int, judges: list[str], auditors: list[str]) -> str:
    env = Environment(autoescape=True)
    text = dict(zip(run.segments["segment_id"], run.segments["text"]))
    case = dict(zip(run.segments["segment_id"], run.segments["case_id"]))
    themes = []
    for t in run.themes.to_dict("records"):
        ids = [q.strip() for q in str(t["quote_ids"]).split(";") if q.strip()][:5]
        themes.append({**t, "quotes": [{"id": q, "text": text.get(q, ""), "case": case.get(q, "")}
                                       for q in ids]})
    unassigned = run.segments[run.segments["theme"] < 0].to_dict("records")
    return env.from_string(_TEMPLATE).render(
        run=run, round=round, judges=judges, auditors=auditors,
        domains=run.domains.to_dict("records"), themes=themes, unassigned=unassigned)
