"""Reading sentences: what each figure (and the headline) says, generated from the numbers.

The README's Findings (:mod:`mtkd.findings`) quote the same sentences, so the report and the
README can never disagree.
"""

from __future__ import annotations

import numpy as np

from mtkd.analysis.regions import FAILURES, HIGH_CONFIDENCE
from mtkd.analysis.tables import ZERO_GAP


def score(v: float | None, metric: str) -> str:
    """A primary-metric value as the report prints it: ×100, with % except for MCC."""
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}" + ("" if metric == "mcc" else "%")


def signed(v: float) -> str:
    return f"{'+' if v >= 0 else '−'}{abs(v):.1f}"


def interval(low: float, high: float) -> str:
    return f"[{signed(low)}, {signed(high)}]"


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


def pp(v: float | None) -> str:
    """A difference of fractions as signed pp."""
    return "n/a" if v is None else signed(100 * v)


def pp_interval(low: float | None, high: float | None) -> str:
    return "no interval" if low is None or high is None else interval(100 * low, 100 * high)


def unit(s: dict) -> str:
    """What the bootstrap resamples besides seeds: "movies", "reviews", "examples"."""
    return f"{s.get('group_by', 'example')}s"


def headline_sentence(task: str, s: dict) -> str:
    h = s.get("headline")
    if not h:
        return f"{task}: no comparison (needs at least one single-teacher and one multi-teacher strategy)."
    text = (f"{task}: best multi ({h['multi']}) vs best single ({h['single']}), both chosen on validation: "
            f"{pp(h['diff'])} pp on test")
    if h["ci95_low"] is None:
        return f"{text}; {h['note'] or 'no interval'}."
    text += (f", 95% interval {pp_interval(h['ci95_low'], h['ci95_high'])} over {h['n_seeds']} seeds × "
             f"{h['n_groups']} test {unit(s)}, Holm-adjusted over {h['family_size']} comparisons "
             f"{pp_interval(h['ci_adj_low'], h['ci_adj_high'])}; P(multi > single) = {h['prob_improvement']:.2f}: "
             f"{h['verdict']}")
    sel = h.get("selection") or {}
    if sel.get("pair_share") is not None:
        text += (f". Resampling validation {unit(s)} and seeds picks this same pair {pct(sel['pair_share'])} of the time "
                 f"({h['multi']} {pct(sel['a_share'])}, {h['single']} {pct(sel['b_share'])})")
    if h.get("mdd") is not None:
        text += (f". Smallest difference this design detects (80% power, measured seed and {s.get('group_by', 'example')} "
                 f"variance): {100 * h['mdd']:.1f} pp")
    return text + "."


def comparisons_sentence(task: str, c: dict) -> str:
    """How many comparisons of the matrix exclude 0 after Holm, and which."""
    pairs = c["pairs"]
    if not pairs:
        return f"{task}: no comparisons (needs single- or multi-teacher students beside each other or none)."
    tested = [v for v in pairs.values() if v["reject_holm"] is not None]
    if not tested:
        note = next(iter(pairs.values()))["note"]
        return f"{task}: {len(pairs)} comparisons, none with an interval ({note})."
    wins = [v for v in tested if v["reject_holm"]]
    text = (f"{task}: of {len(pairs)} comparisons (each multi vs each single, each vs none; {c['n_seeds']} seeds × "
            f"{c['n_groups']} test {c['group_by']}s resampled, Holm-adjusted), {len(wins)} exclude 0")
    if wins:
        text += ": " + "; ".join(f"{v['a']} {'>' if v['diff'] > 0 else '<'} {v['b']} ({pp(v['diff'])} pp "
                                 f"{pp_interval(v['ci_adj_low'], v['ci_adj_high'])})" for v in wins)
    return text + "."


def strategies_sentence(task: str, s: dict) -> str:
    m = s["primary_metric"]
    students = s["strategies"]
    top = max(students, key=lambda k: (students[k]["test"], -list(students).index(k)))
    text = (f"{task} test {m}: highest student is {top} {score(students[top]['test'], m)} "
            f"[{score(students[top]['ci95_low'], m)}, {score(students[top]['ci95_high'], m)}]")
    if s["none"]:
        text += f"; none {score(s['none']['test'], m)}"
    if s["best_teacher"]:
        text += f"; best teacher (chosen on validation) {s['best_teacher']['name']} {score(s['best_teacher']['test'], m)}"
    return text + "."


def gap_sentence(task: str, s: dict) -> str:
    g = s["gap_closed"]
    if g["reference_teacher"] is None or s["none"] is None:
        return f"{task}: gap closed needs the none student and at least one teacher."
    if g["denominator_pp"] is None or abs(g["denominator_pp"]) < 100 * ZERO_GAP:
        return f"{task}: gap closed is undefined: the best teacher ({g['reference_teacher']}) ties with the none student."
    intervals = g.get("intervals") or {}

    def closed(strategy):
        iv = intervals.get(strategy) or {}
        ci = ("" if iv.get("ci95_low") is None else f" [{pct(iv['ci95_low'])}, {pct(iv['ci95_high'])}]")
        return f"{pct(g['by_strategy'][strategy])}{ci}"

    parts = [f"{k.replace('_', ' ')} {s[k]['strategy']} closes {closed(s[k]['strategy'])}"
             for k in ("best_multi", "best_single") if s[k]]
    return (f"{task}: {' and '.join(parts) or 'no student is compared'} of the {g['denominator_pp']:.1f} pp gap "
            f"between none and the best teacher ({g['reference_teacher']}).")


def agreement_sentence(task: str, a: dict) -> str:
    share = a["share"]["all_agree"]
    dis = {k: v for k, v in a["student_accuracy_when_teachers_disagree"].items() if v is not None}
    if not dis:
        return f"{task}: teachers agree on every test example ({a['n']}), so no region separates the strategies."
    lo, hi = min(dis, key=dis.get), max(dis, key=dis.get)
    return (f"{task}: teachers all agree on {100 * share:.1f}% of test examples; where they disagree, student accuracy "
            f"ranges from {100 * dis[lo]:.1f}% ({lo}) to {100 * dis[hi]:.1f}% ({hi}).")


def failures_sentence(task: str, f: dict) -> str:
    totals = np.sum([[v["count_per_seed"][c] for c in FAILURES] for v in f["strategies"].values()], axis=0)
    if totals.sum() == 0:
        return f"{task}: the students make no errors on test."
    share = totals / totals.sum()
    return (f"{task}: of all student errors (every strategy, mean over seeds), {100 * share[0]:.0f}% are examples every "
            f"teacher also gets wrong, {100 * share[1]:.0f}% examples every teacher gets right (transfer failed) and "
            f"{100 * share[2]:.0f}% examples where the teachers split.")


def confidence_sentence(conf: dict) -> str:
    parts = []
    for task, by_teacher in conf.items():
        names = [t for t in by_teacher if t != "all_teachers"]
        most = max(names, key=lambda t: by_teacher[t]["test"]["mean_max_prob"])
        least = min(names, key=lambda t: by_teacher[t]["test"]["mean_max_prob"])
        c, d = by_teacher[most]["test"], by_teacher[least]["test"]
        parts.append(f"{task} test: most confident teacher {most} (mean max prob {c['mean_max_prob']:.3f}, "
                     f"{100 * c['high_confidence_share']:.0f}% above {HIGH_CONFIDENCE}), least {least} "
                     f"({d['mean_max_prob']:.3f}, {100 * d['high_confidence_share']:.0f}%)")
        for t in names:
            if "train_in_sample" in by_teacher[t]:
                parts.append(f"{task} train, {t}: mean max prob {by_teacher[t]['train_in_sample']['mean_max_prob']:.3f} "
                             f"in-sample vs {by_teacher[t]['train']['mean_max_prob']:.3f} out-of-fold")
    return "; ".join(parts) + "."


def ranking_sentence(summary: dict) -> str:
    parts = []
    for task, s in summary.items():
        m, st = s["primary_metric"], s["strategies"]
        order = sorted(st, key=lambda k: st[k]["rank"])  # stable: ties keep the strategies' order
        first = [k for k in order if st[k]["rank"] == 1]
        text = f"{task}: {' = '.join(first)} ({score(st[first[0]]['test'], m)})"
        multi = [k for k in order if st[k]["kind"] == "multi"]
        if multi and multi[0] not in first:
            text += (f", best-ranked multi-teacher strategy {multi[0]} at rank {st[multi[0]]['rank']} of {len(st)} "
                     f"({score(st[multi[0]]['test'], m)})")
        parts.append(text)
    return "Top-ranked strategy on test " + "; ".join(parts) + "."


def curves_sentence(task: str, rows: dict[str, list[dict]], primary: str, conv: dict | None = None) -> str:
    key = f"val_{primary}"
    finals = [(s, r["seed"], r[key]) for s, rs in rows.items() for r in rs
              if r.get(key) is not None and r["epoch"] == max(x["epoch"] for x in rs if x["seed"] == r["seed"])]
    if not finals:
        return f"{task}: no student training curves found."
    epochs = sorted({r["epoch"] for rs in rows.values() for r in rs})
    lo, hi = min(finals, key=lambda f: f[2]), max(finals, key=lambda f: f[2])
    text = (f"{task}: students trained for {len(epochs)} evaluation(s) up to epoch {epochs[-1]:g}; final validation "
            f"{primary} ranges from {score(lo[2], primary)} ({lo[0]}, seed {lo[1]}) to {score(hi[2], primary)} "
            f"({hi[0]}, seed {hi[1]}).")
    if conv:
        state = "flattened" if conv["flattened"] else "not flattened"
        text += (f" Best evaluation last in {conv['best_at_last']} of {conv['runs']} runs; last gain "
                 f"{100 * conv['last_gain_mean']:+.2f} pp on average ({state}: the threshold is "
                 f"{100 * conv['flat_gain']:.1f} pp).")
    return text


def gate_sentence(task: str, strategy: str, weights: dict) -> str:
    split = "test" if "test" in weights else "train"
    w = weights[split]
    top = max(w, key=w.get)
    return (f"{task} {strategy}: the gate puts the most weight on {top} ({w[top]:.2f} on {split}, "
            f"uniform would be {1 / len(w):.2f}).")


def nats(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def nats_signed(v: float) -> str:
    return f"{'+' if v >= 0 else '−'}{abs(v):.3f}"


def human_sentence(task: str, s: dict) -> str:
    """Fidelity to the raters' distribution (issue #16): the closest student, the teachers, multi vs single."""
    h = s["human"]
    st, teachers = h["strategies"], h["teachers"]
    order = list(st)
    closest = min(order, key=lambda k: (st[k]["kl_human"]["point"], order.index(k)))
    kl, agree = st[closest]["kl_human"], st[closest]["rater_agreement"]
    ci = "" if kl["ci95_low"] is None else f" [{nats(kl['ci95_low'])}, {nats(kl['ci95_high'])}]"
    text = (f"{task}: against the raters' distribution on test ({h['n_test']} examples; raters' mean entropy "
            f"{nats(h['raters']['mean_entropy'])} nats, their most chosen class has {pct(h['raters']['mean_max_share'])} "
            f"of them on average), the closest student is {closest} (KL(human ‖ student) {nats(kl['point'])}{ci} nats; "
            f"a random rater agrees with its prediction {pct(agree['point'])} of the time; "
            f"human ECE {nats(st[closest]['human_ece']['point'])})")
    if teachers:
        lo = min(teachers, key=lambda t: teachers[t]["kl_human"])
        hi = max(teachers, key=lambda t: teachers[t]["kl_human"])
        text += (f"; teachers range from {lo} (KL {nats(teachers[lo]['kl_human'])}) "
                 f"to {hi} (KL {nats(teachers[hi]['kl_human'])})")
    c = h.get("comparison")
    if not c:
        return text + ". No multi vs single comparison (needs a multi- and a single-teacher student)."
    text += (f". Best multi ({c['multi']}) vs best single ({c['single']}), both chosen on validation KL: KL difference "
             f"{nats_signed(c['diff'])} nats on test")
    if c["ci95_low"] is None:
        return f"{text}; {c['note'] or 'no interval'}."
    text += (f", 95% interval [{nats_signed(c['ci95_low'])}, {nats_signed(c['ci95_high'])}] over {c['n_seeds']} seeds × "
             f"{c['n_groups']} test {unit(s)}; P(multi closer) = {c['prob_closer']:.2f}: {c['verdict']}")
    if h.get("note"):
        text += f" ({h['note']})"
    return text + "."


MONOTONE = 0.3  # |Spearman's rho| below this: "no monotone relation"


def rho_text(rho: float) -> str:
    return f"{'−' if rho < 0 else ''}{abs(rho):.2f}"


def transfer_sentence(task: str, s: dict) -> str:
    """Fidelity against generalisation (issue #17, Stanton et al. 2021): what the transfer set moved per
    ``+transfer`` variant (mean over seeds), and how fidelity ranked with the test metric over students."""
    t, m = s["transfer"], s["primary_metric"]
    moved = [f"{p['base']}'s mean test agreement with the fused teacher by {pp(p['agreement_diff'])} pp and its mean "
             f"test {m} by {pp(p['test_diff'])} pp ({p['variant']} − {p['base']})" for p in t["pairs"]]
    text = (f"{task}: the transfer set moved " + "; ".join(moved) if moved
            else f"{task}: no +transfer variant has its base strategy in this run")
    text += f". The teachers' ensemble scores {score(t['ensemble']['test'], m)} on test"
    rho, n = t["spearman"]["rho"], t["spearman"]["n"]
    if rho is None:
        return text + f". Over {n} students (strategy × seed), no rank correlation of fidelity and test {m} (ρ n/a, n = {n})."
    how = ("no monotone relation between fidelity and test " + m if abs(rho) < MONOTONE
           else f"{'higher' if rho > 0 else 'lower'} fidelity went with higher test {m}")
    return text + f". Over {n} students (strategy × seed), {how} (ρ = {rho_text(rho)}, n = {n})."


def _nats(v: float | None) -> str:
    return "n/a" if v is None else f"{'+' if v >= 0 else '−'}{abs(v):.3f}"


def longer_sentence(task: str, rows: list[dict], metric: str, epochs: tuple, other: str) -> str:
    """What training longer moved (issue #17: is fidelity an optimisation problem here?), from
    :func:`mtkd.analysis.transfer.longer_training`'s rows: per strategy, long − short, paired by seed."""
    if not rows:
        return f"{task}: no strategy of this run is in `{other}` with the same seeds: nothing to pair."
    short, long = epochs
    n = rows[0]["agreement_fused"]["n"]
    parts = [f"{r['strategy']}: agreement {pp(r['agreement_fused']['mean'])} pp "
             f"{pp_interval(r['agreement_fused']['low'], r['agreement_fused']['high'])}, KL "
             f"{_nats(r['kl_fused']['mean'])} nats [{_nats(r['kl_fused']['low'])}, {_nats(r['kl_fused']['high'])}], "
             f"test {metric} {pp(r['test']['mean'])} pp {pp_interval(r['test']['low'], r['test']['high'])}" for r in rows]
    raised = [r for r in rows if r["agreement_fused"]["low"] is not None and r["agreement_fused"]["low"] > 0]
    lowered = [r for r in rows if r["agreement_fused"]["high"] is not None and r["agreement_fused"]["high"] < 0]
    better = [r for r in rows if r["test"]["low"] is not None and r["test"]["low"] > 0]
    if len(raised) == len(rows):
        reading = ("training longer raised every student's agreement with its fused teacher: here part of the "
                   "student–teacher gap is optimisation, as Stanton et al. argue")
    elif not raised and not lowered:
        reading = ("no student's agreement with its fused teacher moved detectably: at this length, training longer "
                   "does not close the fidelity gap")
    else:
        reading = (f"training longer raised agreement with the fused teacher for {len(raised)} of {len(rows)} "
                   f"strategies and lowered it for {len(lowered)}")
    reading += (f"; test {metric} rose detectably for {len(better)} of {len(rows)}" if better
                else f"; no strategy's test {metric} rose detectably")
    return (f"{task}: {long} epochs instead of {short} (each student paired with its own seed's in `{other}`; "
            f"mean of long − short over {n} seeds, 95% t interval over seeds, the test examples fixed): "
            + "; ".join(parts) + f". Reading: {reading}.")
