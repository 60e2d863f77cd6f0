"""The three claims as the report and the Paper page show them: each claim's words, its table of every run it
uses, and its verdict: a status with a sentence that quotes the numbers behind it, and the rule that decided it.

A verdict is ``holds``, ``holds in part``, ``does not hold`` (on this model, at these sizes), ``undecided at this
budget`` (the claim's premise did not hold at this budget: full retraining had not converged, there was no gap to
close, pruning did no damage) or ``not measured`` (a run it needs failed or is missing). Which one, and every rule
behind it, is decided in :mod:`perp_engine.reproduce.decisions`; this module picks each claim's runs out of the set,
asks those rules, and writes down what they decided and the numbers they decided it on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field

from ..evaluation.recovery import SCALE
from ..presets import DESCRIPTIONS
from .decisions import (
    CLOSE_SHARE,
    COST_MEMORY,
    COST_TIME,
    FAILS,
    GAP_MARGIN,
    HOLDS,
    MATCH_SHARE,
    MEMORY_EFFICIENT,
    PARTLY,
    RULES,
    SIGNIFICANT,
    UNDECIDED,
    UNMEASURED,
    best_run,
    claim1_status,
    claim2_status,
    claim3_status,
    closes_gap,
    converged,
    costs_a_fraction,
    damaged,
    gap,
    gap_closed,
    highest,
    kept_sparsity,
    last_change,
    matches_full,
    memory_efficient,
    ratio,
    share_of_full,
    significant_gain,
    stays_unmerged,
    usable,
)
from .results import RunNumbers
from .runset import (
    CLAIM1_RECIPES,
    CLAIM1_SPARSITIES,
    CLAIM2_ADAPTERS,
    CLAIM2_RECIPES,
    CLAIM2_SPARSITIES,
    CLAIM3_ADAPTERS,
    CLAIM3_PRUNINGS,
    CLAIM3_RECIPES,
    CLAIM3_SPARSITY,
    MEMORY_REFERENCE,
    run_key,
    swept_keys,
)

NAMES = {"none": "no repair", "norms-only": "norms only", "perp": "perp", "full-ft": "full retraining",
         "perp-masklora": "MaskLoRA", "perp-scalelora": "ScaleLoRA", "perp-scalelora-paper": "the paper's ScaleLoRA",
         "perp-lora": "plain LoRA", "recon-norms": "norms only", "recon-masklora": "MaskLoRA",
         "recon-scalelora": "ScaleLoRA"}
CLAIMS = {
    1: ("A tiny subset matches full retraining",
        "Retraining only a tiny expressive subset (biases, norms, the head; 0.01%-0.05% of a GPT model's parameters) "
        "can match full retraining after magnitude pruning, across sparsity levels, at a fraction of the memory and "
        "time."),
    2: ("Sparse adapters close the rest of the gap and stay sparse",
        "At high sparsity, MaskLoRA and ScaleLoRA close the remaining gap to full retraining and merge back without "
        "breaking sparsity (plain LoRA cannot merge without densifying)."),
    3: ("Reconstruction with the adapters improves Wanda and SparseGPT",
        "The same adapters make memory-efficient layer-wise reconstruction that significantly improves "
        "retraining-free pruning (Wanda, SparseGPT)."),
}

RECOVERED = f"recovered {SCALE}"  # the tables' recovery column: the share of the log-perplexity gap


@dataclass
class Table:
    """Rows of raw values (None = no value) under named columns; ``formats`` says how each column reads."""

    columns: list[str]
    formats: list[str]  # text | lr | ppl | percent | share | ratio | count | mib | seconds | sparsity | accuracy
    rows: list[list]


@dataclass
class AccuracyTable:
    """A claim's zero-shot table under one protocol (``note`` says which: tasks, docs, seed, source, metrics,
    splits); cells of format ``accuracy`` are ``[value, standard error]``."""

    note: str
    table: Table

    @classmethod
    def from_dict(cls, data: dict) -> "AccuracyTable":
        return cls(note=data["note"], table=Table(**data["table"]))


@dataclass
class Verdict:
    status: str  # one of VERDICTS
    text: str
    rule: str = ""  # how the status was decided (decisions.RULES), printed under the verdict


@dataclass
class Claim:
    number: int
    title: str
    statement: str
    table: Table
    verdict: Verdict
    zero_shot: list[AccuracyTable] = field(default_factory=list)  # when its runs were scored zero-shot

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Claim":
        return cls(number=data["number"], title=data["title"], statement=data["statement"],
                   table=Table(**data["table"]), verdict=Verdict(**data["verdict"]),
                   zero_shot=[AccuracyTable.from_dict(t) for t in data.get("zero_shot", [])])


def analyse(runs: Iterable[RunNumbers], model: str) -> list[Claim]:
    """The three claims from the runs of the set (by key); ``model`` names the model in the verdicts."""
    by_key = {r.key: r for r in runs}
    return [claim1(by_key, model), claim2(by_key, model), claim3(by_key, model)]


# -- formatting the numbers in verdicts ------------------------------------------------------------------------


def fmt(value, kind: str) -> str:
    """One value as the tables and verdicts print it; ``–`` for a missing one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, str):
        return value
    if kind == "ppl":
        return f"{value:,.2f}" if value < 1e5 else f"{value:.3g}"
    if kind == "accuracy":  # [value, standard error] of a zero-shot score, in points as the papers print it
        value, error = value
        return "–" if value is None else f"{100 * value:.1f}" + (f" ± {100 * error:.1f}" if error is not None else "")
    if kind == "percent":  # a fraction of the model's parameters
        return f"{100 * value:.3g}%"
    if kind in ("share", "sparsity"):
        return f"{100 * value:.0f}%" if kind == "share" else f"{100 * value:.1f}%"
    if kind == "lr":
        return f"{value:g}"
    if kind == "ratio":
        return f"{value:.2f}x"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "mib":
        return f"{value:,.0f}"
    if kind == "seconds":
        return f"{value:.2f}"
    return str(value)


def _times(value: float | None) -> str:
    """A ratio a verdict compares with a threshold, to three decimals (0.501x is not within 0.5x; 0.50x would hide
    it)."""
    return "–" if value is None else f"{value:.3f}x"


def _shares(values: list[float | None]) -> str:
    return " / ".join(fmt(v, "share") for v in values)


def _sparsities(values: Iterable[float]) -> str:
    return "/".join(f"{100 * s:.0f}" for s in values) + "%"


def _missing(runs: Mapping[str, RunNumbers], keys: Iterable[str]) -> list[str]:
    return [k for k in keys if k not in runs or not runs[k].done]


def _unmeasured(runs: Mapping[str, RunNumbers], keys: list[str], number: int) -> Verdict:
    missing = _missing(runs, keys)
    why = "; ".join(f"{k}: {runs[k].status}" + (f" ({runs[k].error})" if runs[k].error else "") if k in runs
                    else f"{k}: missing" for k in missing[:4])
    more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
    return Verdict(UNMEASURED, f"Not measured: runs it needs did not finish ({why}{more}).", RULES[number])


def _opening(status: str, model: str) -> str:
    return {HOLDS: f"Holds on {model}", PARTLY: f"Holds in part on {model}", FAILS: f"Does not hold on {model}",
            UNDECIDED: f"Undecided at this budget on {model}"}[status]


def recipe_label(run: RunNumbers) -> str:
    """The recipe's name in tables, with its learning rate where the set sweeps that recipe's rate there."""
    name = NAMES.get(run.preset, run.preset)
    swept = run.method == "magnitude" and run.pattern == "unstructured" and len(swept_keys(run.preset, run.sparsity)) > 1
    return f"{name} lr {run.lr:g}" if swept else name


def _curve_end(run: RunNumbers | None) -> str:
    """``"ppl 120.3 -> 118.9 over its last 20 steps"``: the last two points of a run's learning curve."""
    if run is None or len(run.curve) < 2:
        return "no learning curve"
    a, b = run.curve[-2], run.curve[-1]
    return f"{fmt(a['ppl'], 'ppl')} -> {fmt(b['ppl'], 'ppl')} over its last {b['step'] - a['step']} steps"


# -- claim 1 --------------------------------------------------------------------------------------------------


def baseline(runs: Mapping[str, RunNumbers], sparsity: float) -> RunNumbers | None:
    """Full retraining at magnitude ``sparsity``: the best usable run of its learning-rate sweep (the preset's rate
    alone where none is swept), else the preset-rate run as it is (failed or missing: None)."""
    keys = swept_keys("full-ft", sparsity)
    return best_run(runs.get(k) for k in keys) or runs.get(keys[0])


def _table_runs(runs: Mapping[str, RunNumbers], sparsities, presets) -> Iterator[tuple[float, str, RunNumbers]]:
    """``(sparsity, preset, run)`` of a claim's table, in set order: each preset's run at magnitude pruning, every
    rate of a swept one; runs the set has no row for are skipped."""
    for sparsity in sparsities:
        for preset in presets:
            for key in swept_keys(preset, sparsity):
                if key in runs:
                    yield sparsity, preset, runs[key]


def claim1(runs: Mapping[str, RunNumbers], model: str) -> Claim:
    title, statement = CLAIMS[1]
    keys = {(s, p): run_key("magnitude", s, "unstructured", p) for s in CLAIM1_SPARSITIES for p in CLAIM1_RECIPES}
    full = {s: baseline(runs, s) for s in CLAIM1_SPARSITIES}
    rows = []
    for sparsity, preset, run in _table_runs(runs, CLAIM1_SPARSITIES, CLAIM1_RECIPES):
        reference = full[sparsity]
        share = (share_of_full(run, reference) if preset not in ("none", "full-ft") and usable(reference)
                 and usable(run) else None)
        trained = run.mode != "none"
        rows.append([f"{sparsity:.0%}", recipe_label(run) + (" (baseline)" if run is reference else ""), run.lr,
                     run.trainable_params if trained else None, run.trainable_fraction if trained else None,
                     run.end_ppl if run.done else run.status, run.recovered, share,
                     last_change(run) if trained else None, run.seconds_per_step, run.train_peak_mb])
    table = Table(["sparsity", "recipe", "lr", "trainable", "trainable %", "perplexity", RECOVERED,
                   "of full retraining's recovery", "last curve change", "s / step", "train peak MiB"],
                  ["text", "text", "lr", "count", "percent", "ppl", "share", "share", "share", "seconds", "mib"], rows)
    perp = {s: runs.get(keys[(s, "perp")]) for s in CLAIM1_SPARSITIES}
    measured = [s for s in CLAIM1_SPARSITIES if usable(full[s]) and perp[s] is not None and perp[s].done]
    if not measured:
        return Claim(1, title, statement, table, _unmeasured(runs, list(keys.values()), 1))
    decided = [s for s in measured if converged(full[s])]
    matched = [s for s in decided if matches_full(perp[s], full[s])]
    memory = highest(ratio(perp[s].train_peak_mb, full[s].train_peak_mb) for s in decided)
    time = highest(ratio(perp[s].seconds_per_step, full[s].seconds_per_step) for s in decided)
    cheap = costs_a_fraction(memory, time)
    status = claim1_status(CLAIM1_SPARSITIES, decided, matched, cheap)
    norms = {s: runs.get(keys[(s, "norms-only")]) for s in measured}
    fraction = next((r.trainable_fraction for r in perp.values() if r and r.trainable_fraction), None)
    norms_fraction = next((r.trainable_fraction for r in norms.values() if r and r.trainable_fraction), None)
    undecided = [s for s in measured if s not in decided]
    premise = (f"full retraining converged at {_sparsities(decided) if decided else 'no sparsity'}"
               + (f"; not at {_sparsities(undecided)} ("
                  + "; ".join(f"{s:.0%}: {_curve_end(full[s])}" for s in undecided) + ")" if undecided else "") + ". ")
    text = (f"{_opening(status, model)}: " + premise
            + f"`perp` ({fmt(fraction, 'percent')} of the model's own parameters) recovers "
            f"{_shares([share_of_full(perp[s], full[s]) for s in measured])} of what full retraining recovers at "
            f"{_sparsities(measured)} sparsity (perplexity {' / '.join(fmt(_ppl(perp[s]), 'ppl') for s in measured)} "
            f"against {' / '.join(fmt(full[s].end_ppl, 'ppl') for s in measured)}); it matches full retraining (at "
            f"least {MATCH_SHARE:.0%} of its recovery, or a perplexity no higher) at "
            f"{_sparsities(matched) if matched else 'no decided sparsity'}"
            f"{'' if len(measured) == len(CLAIM1_SPARSITIES) else ' (the other sparsities were not measured)'}. "
            + (f"Its train-stage peak memory is {_times(memory)} and its time per step {_times(time)} "
               f"full retraining's (a fraction: at most {COST_MEMORY:g}x and {COST_TIME:g}x: "
               f"{'met' if cheap else 'not met' if memory is not None and time is not None else 'not measured'}). "
               if decided else "")
            + f"Norms only ({fmt(norms_fraction, 'percent')}) recovers "
            f"{_shares([share_of_full(norms[s], full[s]) if norms[s] and norms[s].done else None for s in measured])}"
            f" of full retraining's recovery." + _diverged([*(r for r in perp.values() if r), *(n for n in norms.values() if n)]))
    return Claim(1, title, statement, table, Verdict(status, text, RULES[1]))


def _diverged(runs: Iterable[RunNumbers]) -> str:
    """`` Diverged (counted as failing): a, b.`` for the repairs that blew up, or nothing."""
    names = [r.key for r in runs if r.diverged]
    return f" Diverged (counted as failing): {', '.join(names)}." if names else ""


# -- claim 2 --------------------------------------------------------------------------------------------------


def claim2(runs: Mapping[str, RunNumbers], model: str) -> Claim:
    title, statement = CLAIMS[2]
    keys = {(s, p): run_key("magnitude", s, "unstructured", p) for s in CLAIM2_SPARSITIES for p in CLAIM2_RECIPES}
    full = {s: baseline(runs, s) for s in CLAIM2_SPARSITIES}
    perp = {s: runs.get(keys[(s, "perp")]) for s in CLAIM2_SPARSITIES}
    rows = []
    for sparsity, preset, run in _table_runs(runs, CLAIM2_SPARSITIES, CLAIM2_RECIPES):
        closed = (gap_closed(run, perp[sparsity], full[sparsity])
                  if preset not in ("perp", "full-ft") and perp[sparsity] and full[sparsity] else None)
        after = "kept unmerged" if run.unmerged else run.final_sparsity
        rows.append([f"{sparsity:.0%}", recipe_label(run) + (" (baseline)" if run is full[sparsity] else ""),
                     run.lr, run.trainable_fraction, run.adapter_params if run.unmerged else None,
                     run.end_ppl if run.done else run.status, run.recovered, closed, run.pruned_sparsity,
                     after, run.seconds_per_step, run.train_peak_mb])
    table = Table(["sparsity", "recipe", "lr", "trainable %", "extra params kept unmerged", "perplexity", RECOVERED,
                   "of perp's gap to full retraining closed", "sparsity pruned", "sparsity of the final weights",
                   "s / step", "train peak MiB"],
                  ["text", "text", "lr", "percent", "count", "ppl", "share", "share", "sparsity", "sparsity", "seconds",
                   "mib"], rows)
    measured = [s for s in CLAIM2_SPARSITIES if usable(perp[s]) and usable(full[s])]
    if not measured:
        return Claim(2, title, statement, table, _unmeasured(runs, list(keys.values()), 2))
    decided = [s for s in measured if gap(perp[s], full[s]) is not None]
    counted = [runs.get(keys[(s, p)]) for s in decided for p in CLAIM2_ADAPTERS
               if usable(runs.get(keys[(s, p)])) and kept_sparsity(runs.get(keys[(s, p)])) is not None]
    if decided and not counted:  # a gap, but no adapter finished with its final zeros counted: nothing to judge
        return Claim(2, title, statement, table, Verdict(
            UNMEASURED, "Not measured: there is a gap to close, but no adapter run finished with the sparsity of its "
                        "final weights recorded (" + _finished([runs.get(keys[(s, p)]) for s in decided
                                                                 for p in CLAIM2_ADAPTERS]) + ").", RULES[2]))
    closes = {p: [s for s in decided if closes_gap(runs.get(keys[(s, p)]), perp[s], full[s])] for p in CLAIM2_ADAPTERS}
    status = claim2_status(CLAIM2_SPARSITIES, decided, closes)
    no_gap = [s for s in measured if s not in decided]
    adapters = "; ".join(
        f"{NAMES[p]} ends at {' / '.join(_end(runs.get(keys[(s, p)])) for s in measured)}"
        + (f" (closing {_shares([gap_closed(runs.get(keys[(s, p)]), perp[s], full[s]) for s in decided])} of the gap;"
           f" closes it at {_sparsities(closes[p]) if closes[p] else 'no sparsity'})" if decided else "")
        for p in CLAIM2_ADAPTERS)
    sparse = [runs[keys[(s, p)]] for s in measured for p in CLAIM2_ADAPTERS if runs.get(keys[(s, p)]) and runs[keys[(s, p)]].done]
    text = " ".join(part for part in (
        f"{_opening(status, model)}: at {_sparsities(measured)} sparsity perp ends at "
        f"{' / '.join(fmt(perp[s].end_ppl, 'ppl') for s in measured)} against full retraining's "
        f"{' / '.join(fmt(full[s].end_ppl, 'ppl') for s in measured)}"
        + (f" (no gap to close at {_sparsities(no_gap)}: full retraining is not at least {GAP_MARGIN:g} below perp "
           "in log-perplexity, so no adapter can be judged there)" if no_gap else "") + f". {adapters}.",
        f"Closing the gap: ending below perp with at least {CLOSE_SHARE:.0%} of it closed, or a perplexity no higher "
        "than full retraining's, with the pruned model's zeros counted in the final weights.",
        _kept(sparse), _lora([runs.get(keys[(s, "perp-lora")]) for s in measured]), _diverged(sparse).strip()) if part)
    return Claim(2, title, statement, table, Verdict(status, text, RULES[2]))


def _ppl(run: RunNumbers | None) -> float | None:
    return run.end_ppl if run is not None and run.done else None


def _end(run: RunNumbers | None) -> str:
    """A run's final perplexity as a verdict quotes it, or why it has none (failed, diverged, missing)."""
    if run is None:
        return "– (missing)"
    if run.diverged:
        return "– (diverged)"
    return fmt(run.end_ppl, "ppl") if usable(run) else f"– ({run.status})"


def _finished(runs: list[RunNumbers | None]) -> str:
    """``a: done, sparsity not recorded; b: failed`` for the runs a verdict could not use."""
    return "; ".join(f"{r.key}: " + ("sparsity of the final weights not recorded" if r.done else r.status)
                     for r in runs if r is not None)


def _kept(runs: list[RunNumbers]) -> str:
    """The sentence on whether each merged model's final weights have its pruned model's zeros."""
    counted = [r for r in runs if kept_sparsity(r) is not None]
    if not counted:
        return "The sparsity of the final weights was not recorded." if runs else ""
    changed = [r for r in counted if not kept_sparsity(r)]
    listed = ", ".join(f"{NAMES[r.preset]} {fmt(r.final_sparsity, 'sparsity')} (pruned {fmt(r.pruned_sparsity, 'sparsity')})"
                       for r in counted)
    unrecorded = [r.key for r in runs if kept_sparsity(r) is None]
    return (f"Zeros counted in the final weights after the merge: {listed}: "
            + ("every merged model kept its pruned model's sparsity." if not changed else
               f"changed for {', '.join(r.key for r in changed)}.")
            + (f" Not recorded for {', '.join(unrecorded)}." if unrecorded else ""))


def _lora(runs: list[RunNumbers | None]) -> str:
    if not runs or not all(r is not None and r.done for r in runs):
        return ""
    extra, own = runs[0].adapter_params, runs[0].model_params
    ends = " / ".join(fmt(r.end_ppl, "ppl") for r in runs)
    if not stays_unmerged(runs):
        return f"Plain LoRA ends at {ends} and was merged, which this check does not expect."
    return (f"Plain LoRA ends at {ends} but stays unmerged: {extra:,} extra parameters "
            f"({fmt(extra / own if own else None, 'percent')} of the model's own parameters) computed beside the "
            "sparse layers, since merging would fill every zero.")


# -- claim 3 --------------------------------------------------------------------------------------------------


def claim3(runs: Mapping[str, RunNumbers], model: str) -> Claim:
    title, statement = CLAIMS[3]
    reference = runs.get(run_key(*MEMORY_REFERENCE))
    ref_mb = reference.train_peak_mb if reference and reference.done else None
    rows = []
    for method, pattern in CLAIM3_PRUNINGS:
        for preset in CLAIM3_RECIPES:
            run = runs.get(run_key(method, CLAIM3_SPARSITY, pattern, preset))
            if run is None:
                continue
            rows.append([_pruning_name(method, pattern), NAMES[preset],
                         run.trainable_fraction if run.mode != "none" else None, run.end_ppl if run.done else run.status,
                         run.recovered, run.train_seconds, run.train_peak_mb, ratio(run.train_peak_mb, ref_mb)])
    if reference is not None:
        rows.append(["magnitude 50%", "full retraining (memory reference)", reference.trainable_fraction,
                     reference.end_ppl if reference.done else reference.status, reference.recovered,
                     reference.train_seconds, ref_mb, 1.0 if ref_mb else None])
    table = Table(["pruning", "repair", "trainable %", "perplexity", RECOVERED, "train s", "train peak MiB",
                   "memory vs full retraining"],
                  ["text", "text", "percent", "ppl", "share", "seconds", "mib", "ratio"], rows)
    pruned = {(m, p): runs.get(run_key(m, CLAIM3_SPARSITY, p, "none")) for m, p in CLAIM3_PRUNINGS}

    def finished(mp: tuple[str, str]) -> list[RunNumbers]:
        """The reconstructions with an adapter after pruning ``mp`` that finished."""
        return [runs[run_key(mp[0], CLAIM3_SPARSITY, mp[1], a)] for a in CLAIM3_ADAPTERS if _done(runs, mp, a)]

    measured = [mp for mp in CLAIM3_PRUNINGS if usable(pruned[mp]) and finished(mp)]
    if not measured:
        keys = [run_key(m, CLAIM3_SPARSITY, p, r) for m, p in CLAIM3_PRUNINGS for r in CLAIM3_RECIPES]
        return Claim(3, title, statement, table, _unmeasured(runs, keys, 3))
    decided = [mp for mp in measured if damaged(pruned[mp])]
    significant = [mp for mp in decided if significant_gain(highest(r.recovered for r in finished(mp)))]
    adapters = [run for mp in measured for run in finished(mp)]
    peak = highest(r.train_peak_mb for r in adapters)
    efficient = memory_efficient(peak, ref_mb)
    status = claim3_status(CLAIM3_PRUNINGS, decided, significant, efficient)
    names = ", ".join(_pruning_name(m, p) for m, p in measured)
    undamaged = [_pruning_name(*mp) for mp in measured if mp not in decided]

    def shares(preset: str) -> str:
        return _shares([runs[run_key(m, CLAIM3_SPARSITY, p, preset)].recovered if _done(runs, (m, p), preset) else None
                        for m, p in measured])

    memory = (f"With an adapter its train-stage peak memory is at most {fmt(peak, 'mib')} MiB, "
              f"{_times(ratio(peak, ref_mb))} full retraining's {fmt(ref_mb, 'mib')} MiB (memory-efficient: at most "
              f"{MEMORY_EFFICIENT:g}x: {'met' if efficient else 'not met'})." if efficient is not None else
              f"Its memory against full retraining's was not measured ({_missing_memory(reference, adapters)}), so the "
              "claim cannot hold in full.")
    text = (f"{_opening(status, model)}: block-wise reconstruction with MaskLoRA recovers {shares('recon-masklora')} "
            f"{SCALE} (the pruning damage) of {names} (ScaleLoRA {shares('recon-scalelora')}); significant (at least "
            f"{SIGNIFICANT:.0%} with one of the adapters) for "
            f"{', '.join(_pruning_name(*mp) for mp in significant) or 'none of them'}"
            + (f" (no damage to recover after {', '.join(undamaged)})" if undamaged else "") + f". {memory}"
            + _diverged(adapters))
    return Claim(3, title, statement, table, Verdict(status, text, RULES[3]))


def _missing_memory(reference: RunNumbers | None, adapters: list[RunNumbers]) -> str:
    """Which train-stage peak claim 3's memory comparison lacks: full retraining's, or the reconstructions'."""
    if reference is None or not reference.done:
        return f"{run_key(*MEMORY_REFERENCE)}: {reference.status if reference else 'missing'}"
    if reference.train_peak_mb is None:
        return f"{reference.key} recorded no train-stage peak"
    return "no reconstruction recorded a train-stage peak"


def _done(runs: Mapping[str, RunNumbers], pruning: tuple[str, str], preset: str) -> bool:
    run = runs.get(run_key(pruning[0], CLAIM3_SPARSITY, pruning[1], preset))
    return run is not None and run.done


def _pruning_name(method: str, pattern: str) -> str:
    label = {"wanda": "Wanda", "sparsegpt": "SparseGPT", "magnitude": "magnitude"}[method]
    return f"{label} {pattern if pattern != 'unstructured' else f'{CLAIM3_SPARSITY:.0%}'}"


def recipe_names() -> dict[str, dict[str, str]]:
    """Each preset of the set with its name in the tables and its description (the report's legend)."""
    return {p: {"name": NAMES[p], "description": DESCRIPTIONS[p]}
            for p in dict.fromkeys([*CLAIM1_RECIPES, *CLAIM2_RECIPES, *CLAIM3_RECIPES])}
