"""The report as one self-contained HTML file: inline CSS, pictures as ``data:`` PNGs, one small inline script.

Nothing is fetched: the page's Content-Security-Policy allows images from ``data:`` only, styles inline and the one
script by its hash, so a browser refuses any other load (and says so on its console). Every text that comes from
the bundle or the data — class names, file names, texts — is escaped.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Any

#: marks every image decoded (``data-images-ok``) and names any that did not on the console
SCRIPT = """window.addEventListener("load", function () {
  var bad = Array.prototype.filter.call(document.images, function (im) { return !(im.complete && im.naturalWidth > 0); });
  bad.forEach(function (im) { console.error("transferkit report: image did not decode: " + im.alt); });
  document.body.setAttribute("data-images-ok", bad.length ? "false" : "true");
});"""

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2733; margin: 0;
       background: #f6f7f9; }
header { background: #1d2733; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; } header p { margin: 0; color: #c9d2dc; }
nav { padding: 8px 32px; background: #e9edf2; font-size: 14px; } nav a { margin-right: 14px; color: #2a5d8f; }
main { padding: 8px 32px 32px; max-width: 1180px; }
section { background: #fff; border: 1px solid #dde2e8; border-radius: 6px; padding: 14px 20px; margin: 16px 0; }
h2 { font-size: 18px; margin: 2px 0 10px; }
.cards { display: flex; gap: 14px; flex-wrap: wrap; }
.card { border: 1px solid #dde2e8; border-radius: 6px; padding: 8px 16px; min-width: 130px; }
.card b { display: block; font-size: 24px; } .card span { color: #5b6875; font-size: 13px; }
table { border-collapse: collapse; font-size: 14px; } td, th { padding: 4px 9px; border: 1px solid #e3e7ec; }
th { background: #f1f3f6; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.cm td { text-align: center; min-width: 34px; } .rot { writing-mode: vertical-rl; transform: rotate(180deg); }
.warn { background: #fff4d6; border: 1px solid #f0c36d; padding: 6px 10px; border-radius: 4px; }
.verdict { font-weight: 600; padding: 6px 10px; border-radius: 4px; display: inline-block; }
.positive { background: #dff3e4; } .neutral { background: #fff4d6; } .negative { background: #fbdada; }
.mistakes { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 190px; border: 1px solid #dde2e8; border-radius: 6px; padding: 8px; font-size: 13px; }
figure img { display: block; margin: 0 auto 6px; image-rendering: pixelated; }
figure blockquote { margin: 0 0 6px; font-style: italic; max-height: 9em; overflow: auto; }
.muted { color: #5b6875; } .small { font-size: 12px; word-break: break-all; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 0; } dt { color: #5b6875; }
pre { background: #f1f3f6; padding: 8px 10px; border-radius: 4px; overflow-x: auto; }
.yes { color: #1b7a3a; font-weight: 600; } .no { color: #b3261e; font-weight: 600; }
.unknown { color: #9a6a00; font-weight: 600; }
"""


def render_html(c: dict[str, Any]) -> str:
    """The whole page for :func:`~.contents.report_contents`'s ``c``."""
    script_hash = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    csp = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'"
    m = c["metrics"]
    sections = [_summary(c), _confusion(m), _per_class(m), _calibration(c), _training(c), _mistakes(c),
                _card(c["model_card"], c)]
    nav = " ".join(f'<a href="#{key}">{escape(label)}</a>' for key, label in NAV)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(csp)}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>transferkit report: {escape(c["bundle"])}</title><style>{CSS}</style></head>\n<body>'
        f'<header><h1>transferkit report</h1><p>bundle <b>{escape(c["bundle"])}</b> on <b>{escape(c["data"]["name"])}'
        f'</b> ({c["data"]["scored"]} items) · made {escape(c["created"])} by transferkit {escape(c["transferkit"])}'
        f'</p></header><nav>{nav}</nav><main>' + "\n".join(sections) +
        f'</main><script>{SCRIPT}</script></body></html>\n'
    )


NAV = [("summary", "summary"), ("confusion", "confusion matrix"), ("per-class", "per class"),
       ("calibration", "calibration"), ("training", "training"), ("mistakes", "mistakes"), ("model-card", "model card")]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _summary(c: dict[str, Any]) -> str:
    m, cal = c["metrics"], c["calibration"]
    cards = [("accuracy", _pct(m["accuracy"])), ("macro-F1", f"{m['macro_f1']:.3f}"), ("items scored", str(m["images"])),
             ("classes", str(len(m["classes"])))]
    if cal:
        cards.append(("ECE (15 bins)", f"{cal['ece_before']:.3f}"))
    html = "".join(f'<div class="card"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for k, v in cards)
    warnings = "".join(f'<p class="warn">{escape(w)}</p>' for w in c["warnings"])
    skipped = c["data"]["skipped"]
    if skipped:
        warnings += (f'<p class="warn">{len(skipped)} input(s) could not be used and are not scored: '
                     + escape("; ".join(f"{s[0]} ({s[1]})" for s in skipped[:5]))
                     + (" …" if len(skipped) > 5 else "") + "</p>")
    return f'<section id="summary"><h2>Summary</h2><div class="cards">{html}</div>{warnings}</section>'


def _confusion(m: dict[str, Any]) -> str:
    classes, cm = m["classes"], m["confusion_matrix"]
    head = "".join(f'<th><span class="rot">{escape(k)}</span></th>' for k in classes)
    rows = []
    for name, row in zip(classes, cm, strict=True):
        total = sum(row) or 1
        cells = []
        for n in row:
            share = n / total
            colour = "#fff" if share > 0.55 else "#1d2733"
            cells.append(f'<td style="background: rgba(42,93,143,{share:.3f}); color: {colour}" '
                         f'title="{n} of {total}">{n}</td>')
        rows.append(f"<tr><th>{escape(name)}</th>{''.join(cells)}</tr>")
    return ('<section id="confusion"><h2>Confusion matrix</h2><p class="muted">Rows: true class; columns: predicted '
            'class; shading: the share of the row (recall on the diagonal).</p>'
            f'<table class="cm"><tr><th>true \\ predicted</th>{head}</tr>{"".join(rows)}</table></section>')


def _per_class(m: dict[str, Any]) -> str:
    rows = "".join(f'<tr><td>{escape(k)}</td><td class="num">{s["precision"]:.3f}</td><td class="num">'
                   f'{s["recall"]:.3f}</td><td class="num">{s["f1"]:.3f}</td><td class="num">{s["support"]}</td></tr>'
                   for k, s in m["per_class"].items())
    return ('<section id="per-class"><h2>Precision and recall per class</h2><table id="per-class-table"><tr>'
            '<th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>'
            f'{rows}</table></section>')


def _calibration(c: dict[str, Any]) -> str:
    cal = c["calibration"]
    if not cal:
        return ('<section id="calibration"><h2>Calibration</h2><p class="muted">Too few items (fewer than 4) to '
                'measure calibration.</p></section>')
    t = cal["temperature"]
    advice = ("over-confident: T &gt; 1 softens its probabilities" if t > 1.05 else
              "under-confident: T &lt; 1 sharpens its probabilities" if t < 0.95 else "already well calibrated")
    return (
        '<section id="calibration"><h2>Reliability and temperature scaling</h2>'
        f'<img id="reliability" alt="reliability diagram" src="{escape(c["figures"]["reliability"])}" width="900">'
        '<table><tr><th></th><th>ECE</th><th>negative log-likelihood</th></tr>'
        f'<tr><td>as predicted</td><td class="num">{cal["ece_before"]:.4f}</td><td class="num">'
        f'{cal["nll_before"]:.4f}</td></tr><tr><td>temperature-scaled (cross-fitted)</td><td class="num">'
        f'{cal["ece_after"]:.4f}</td><td class="num">{cal["nll_after"]:.4f}</td></tr></table>'
        f'<p>Temperature <b>T = {t:.3f}</b>: the model is {advice}. Accuracy does not change (the top class stays). '
        f'Protocol: {escape(cal["protocol"])}; T on the halves {", ".join(f"{h:.3f}" for h in cal["halves"])}; '
        f'T fitted on all {c["metrics"]["images"]} items is the one to apply (Guo et al., ICML 2017; ECE over '
        f'{cal["bins"]} equal-width bins). To apply it:</p><pre>import transferkit as tk\n'
        f'from transferkit.report import apply_temperature\nclf = tk.load_bundle({escape(repr(c["bundle"]))})\n'
        f'proba = apply_temperature(clf.predict_proba(X), {t:.4f})</pre></section>')


def _training(c: dict[str, Any]) -> str:
    parts = ['<section id="training"><h2>Training and the transfer verdict</h2>']
    verdict = c["verdict"]
    if verdict and verdict.get("status") == "pending":
        parts.append('<p class="warn">Verdict pending: the baseline did not finish (resume with '
                     '<code>transferkit fit ... --resume</code>).</p>')
    elif verdict:
        from ..verdict import Verdict

        v = Verdict(**{k: verdict[k] for k in Verdict.__dataclass_fields__ if k in verdict})
        parts.append(f'<p id="verdict" class="verdict {escape(v.verdict)}">{escape(v.summary())}</p>')
        parts.extend(f"<p>• {escape(tip)}</p>" for tip in v.advice)
    else:
        parts.append('<p class="muted">No transfer verdict in this bundle (fit with a baseline to get one).</p>')
    if c["figures"]["training_curves"]:
        parts.append(f'<img id="training-curves" alt="training curves" src="{escape(c["figures"]["training_curves"])}"'
                     ' width="900">')
    else:
        parts.append('<p class="muted">No training curves: this strategy trains no epochs (feature extraction fits '
                     'its head on cached features).</p>')
    return "".join(parts) + "</section>"


def _mistakes(c: dict[str, Any]) -> str:
    shown = c["mistakes"]
    if not shown:
        return '<section id="mistakes"><h2>Most confident mistakes</h2><p>No mistakes on this data.</p></section>'
    figures = []
    for i, s in enumerate(shown):
        body = ""
        if s.get("thumbnail"):
            body = f'<img alt="mistake {i + 1}: {escape(s["item"])}" src="{escape(s["thumbnail"])}">'
        elif "text" in s:
            body = f"<blockquote>{escape(s['text'])}</blockquote>"
        figures.append(
            f'<figure class="mistake">{body}<figcaption>predicted <b>{escape(s["predicted"])}</b> '
            f'({s["confidence"]:.2f})<br>true <b>{escape(s["truth"])}</b> ({s["truth_probability"]:.2f})'
            f'<div class="small muted">{escape(s["item"])}</div></figcaption></figure>')
    return (f'<section id="mistakes"><h2>Most confident mistakes</h2><p class="muted">The {len(shown)} wrong '
            'predictions made with the highest confidence (probability of the predicted and of the true class).'
            f'</p><div class="mistakes">{"".join(figures)}</div></section>')


def _card(card: dict[str, Any], c: dict[str, Any]) -> str:
    def row(key: str, value: Any) -> str:
        return f"<dt>{escape(key)}</dt><dd>{escape('–' if value in (None, '', {}) else str(value))}</dd>"

    data = card["training_data"]
    rows = [row("strategy", card["strategy"]), row("head", card["head"]), row("backbone", card["backbone"]),
            row("architecture", card["architecture"]), row("feature layer", card["layer"]),
            row("features", card["features"]), row("reads", card["modality"]),
            row("weights from", card["weights_origin"]), row("source task", card["source_task"]),
            row("weights sha256", card["weights_sha256"]), row("licence (SPDX)", card["licence"]),
            row("trained on", ", ".join(f"{k} {v}" for k, v in data.items() if v is not None)),
            row("unreadable training inputs", card["training_skipped"]),
            row("validation at fit time", ", ".join(f"{k} {v:.4f}" for k, v in card["validation_metrics"].items())),
            row("classes", ", ".join(card["classes"])), row("created", card["created"]),
            row("bundle format", card["format_version"]),
            row("versions", ", ".join(f"{k} {v}" for k, v in card["versions"].items()))]
    chain = "".join(
        f'<tr><td>{escape(s["source"])}</td><td>{escape(s["licence"])}</td><td>{escape(s["role"])}</td>'
        f'<td>{escape(" → ".join([*reversed(s["via"]), "this bundle"]) if s["via"] else "this bundle")}</td>'
        f'<td class="{escape(s["commercial"])}">{escape(s["commercial"])}</td><td>{escape(s.get("note", ""))}</td></tr>'
        for s in card["licence_chain"])
    return ('<section id="model-card"><h2>Model card</h2>' f'<dl>{"".join(rows)}</dl>'
            '<h3>Licence chain</h3><table id="licence-chain"><tr><th>weights</th><th>licence</th><th>role</th>'
            f'<th>reached through</th><th>commercial use</th><th>note</th></tr>{chain}</table>'
            f'<p class="muted">Commercial use of the whole model: <span class="{escape(card["commercial_use"])}">'
            f'{escape(card["commercial_use"])}</span> (every licence in the chain must allow it).</p></section>')
