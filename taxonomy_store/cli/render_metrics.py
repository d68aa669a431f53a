"""Metric runs for people: one rich table per metric, and the history of stored runs.

Shared by `tstore metrics`, `tstore demo` and anything else that prints a run; the JSON form is
the run's own `to_dict()`.
"""

from __future__ import annotations

import click

from taxonomy_store.cli.render import fmt_value, markup, stdout_console, table, untrusted


def _cp(con, r, head: str) -> None:
    v, d, k = r.values, r.details, r.params["k"]
    t = table(f"Categorical Purity CP@{k} per {markup(r.params['level'])} ({markup(r.params['taxonomy'])})",
              ("category", "name", "prompts", f"CP@{k}"), right=("prompts", f"CP@{k}"))
    for code, row in d.get("per_category", {}).items():
        t.add_row(markup(code), markup(untrusted(row.get("name") or "")[:60]), str(row["prompts"]), fmt_value(row.get("cp")))
    t.add_section()
    t.add_row("macro mean", "", str(d.get("prompts", "")), fmt_value(v.get(f"cp@{k}_macro")))
    t.add_row("micro mean", "", "", fmt_value(v.get(f"cp@{k}_micro")))
    t.add_row("chance (macro)", "", "", fmt_value(v.get(f"cp@{k}_chance_macro")))
    con.print(head)
    con.print(t)
    g = d.get("graph", {})
    con.print(f"kNN graph: {g.get('source')}, {g.get('recomputed', 0)} rows recomputed, {g.get('seconds', 0):.2f} s")


def _separation(con, r, head: str) -> None:
    v, d = r.values, r.details
    t = table(f"Safety-Challenging separation, pair set {markup(r.params.get('pair_set') or '')} (lower = better)",
              ("pair type", "pairs", "normalised sim", "cosine"), right=("pairs", "normalised sim", "cosine"))
    for typ, row in d.get("per_type", {}).items():
        t.add_row(markup(typ), str(row["pairs"]), fmt_value(row["norm"]), fmt_value(row["cos"]))
    t.add_section()
    t.add_row("macro mean", str(d.get("pairs", "")), fmt_value(v.get("separation_norm_macro")),
              fmt_value(v.get("separation_cos_macro")))
    con.print(head)
    con.print(t)
    con.print(f"baseline b = {fmt_value(d.get('baseline'), 4)} ({(d.get('baseline_source') or {}).get('source')})")


def _contrast(con, r, head: str) -> None:
    v, d = r.values, r.details
    t = table(f"Safety-Contrast boundary, pair set {markup(r.params.get('pair_set') or '')} "
              "(max normalised sim per unsafe prompt)", ("statistic", "value"), right=("value",))
    quantiles = tuple(n for n in v if n.startswith("contrast_max_norm_q"))
    for name in ("unsafe_prompts", "variants_mean", "contrast_max_norm_mean", "contrast_max_cos_mean") + quantiles:
        if name in v:
            t.add_row(name, fmt_value(v[name]))
    con.print(head)
    con.print(t)
    h = d.get("histogram", {})
    edges, counts = h.get("edges", []), h.get("counts", [])
    for i, c in enumerate(counts):
        con.print(f"  [{edges[i]:.1f}, {edges[i + 1]:.1f}) {'█' * min(c, 60)} {c}")


def _detect(con, r, head: str) -> None:
    v, d, k = r.values, r.details, r.params["k"]
    t = table(f"kNN safety detection, leave-one-out, k={k} ({markup(d.get('weighting', ''))} weighted)",
              ("metric", "value"), right=("value",))
    for name in (f"detect_auroc@{k}", f"detect_f1@{k}", f"detect_threshold@{k}", f"detect_precision@{k}",
                 f"detect_recall@{k}", f"detect_fpr@{k}", f"category_accuracy@{k}", "n_unsafe", "n_safe"):
        if name in v:
            t.add_row(name, fmt_value(v[name]) if not name.startswith("n_") else str(int(v[name] or 0)))
    con.print(head)
    con.print(t)
    worst = d.get("likely_mislabeled", [])[:10]
    if worst:
        w = table("prompts whose neighbours most disagree with their label", ("prompt id", "label", "unsafe score", "label agreement"))
        for row in worst:
            w.add_row(str(row["prompt_id"]), row["label"], fmt_value(row["unsafe_score"]), fmt_value(row["label_agreement"]))
        con.print(w)


def _baseline(con, r, head: str) -> None:
    v, d = r.values, r.details
    est = d.get("estimate", {})
    con.print(head)
    con.print(f"estimated baseline b = {fmt_value(v.get('baseline_estimate'), 4)} over {est.get('pairs')} pairs "
              f"({est.get('sample_a')} x {est.get('sample_b')}, seed {est.get('seed')}); "
              f"stored b = {fmt_value(d.get('stored_baseline'), 4)}")


_PRINTERS = {"cp": _cp, "separation": _separation, "contrast": _contrast, "detect": _detect, "baseline": _baseline}


def trained_on_note(r) -> str | None:
    """What a tuned encoder's run is computed on: prompts it trained on (in-sample) or not."""
    t = r.details.get("trained_on")
    if not t:
        return None
    if t.get("held_out"):
        return f"{untrusted(r.encoder)} was trained on none of the store's {t['of']} prompts: these figures are held out"
    how = "" if t.get("recorded", True) else " (no training record: every prompt counted)"
    return (f"{untrusted(r.encoder)} was trained on {t['prompts']} of the store's {t['of']} prompts{how}: "
            "these figures are trained on (in-sample), not held out")


def print_metric_run(r) -> None:
    """A stored metric run as a headed table on stdout; skipped metrics are noted on stderr."""
    head = f"[bold]{r.metric}[/] · encoder [cyan]{markup(r.encoder)}[/] · data revision {r.data_revision} · run {r.id}"
    printer = _PRINTERS.get(r.metric)
    if printer is not None:
        printer(stdout_console(), r, head)
    note = trained_on_note(r)
    if note:
        click.echo(note)
    for name, why in (r.details.get("skipped") or {}).items():
        click.echo(f"skipped {name}: {why}", err=True)


def print_run_history(runs, data_revision: int) -> None:
    """Stored runs, oldest first, each with the change of its primary value since the previous like run."""
    t = table(f"metric runs (current data revision {data_revision})",
              ("run", "when (UTC)", "encoder", "metric", "parameters", "primary", "value", "data rev", ""))
    previous: dict[tuple, float] = {}
    for r in runs:
        params = ", ".join(f"{k}={v}" for k, v in r.params.items() if v is not None and k != "weighting")
        key = (r.encoder, r.metric, params)
        delta = ""
        if r.primary_value is not None and key in previous:
            diff = r.primary_value - previous[key]
            delta = f" ({diff:+.3f})" if abs(diff) >= 5e-4 else ""
        if r.primary_value is not None:
            previous[key] = r.primary_value
        t.add_row(str(r.id), (r.created_at or "")[:19], markup(r.encoder), r.metric, markup(params), r.primary_name or "",
                  fmt_value(r.primary_value, 4) + delta, str(r.data_revision), "stale" if r.data_revision < data_revision else "")
    stdout_console().print(t)
