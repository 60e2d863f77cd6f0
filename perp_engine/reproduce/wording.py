"""The three claims as the report and the Paper page show them: each claim's words, its table of every run it
uses, and its verdict: a status with a sentence that quotes the numbers behind it.

A verdict is ``holds``, ``holds in part``, ``does not hold`` (on this model, at these sizes) or ``not measured``
(a run it needs failed or is missing). Which one, and every rule behind it, is decided in
:mod:`perp_engine.reproduce.decisions`; this module picks each claim's runs out of the set, asks those rules, and
writes down what they decided and the numbers they decided it on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from ..presets import DESCRIPTIONS
from .decisions import (
    CLOSE_SHARE,
    COST_MEMORY,
    COST_TIME,
    FAILS,
    HOLDS,
    MATCH_SHARE,
    MEMORY_EFFICIENT,
    PARTLY,
    SIGNIFICANT,
    UNMEASURED,
    claim1_measured,
    claim1_status,
    claim2_measured,
    claim2_status,
    claim3_measured,
    claim3_status,
    closes_gap,
    costs_a_fraction,
    gap_closed,
    gap_left,
    highest,
    matches_full,
    memory_efficient,
    merged_sparsities,
    ratio,
    share_of_full,
    significant_gain,
    sparsity_kept,
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


def _shares(values: list[float | None]) -> str:
    return " / ".join(fmt(v, "share") for v in values)


def _sparsities(values: Iterable[float]) -> str:
    return "/".join(f"{100 * s:.0f}" for s in values) + "%"


def _missing(runs: Mapping[str, RunNumbers], keys: Iterable[str]) -> list[str]:
    return [k for k in keys if k not in runs or not runs[k].done]


def _unmeasured(runs: Mapping[str, RunNumbers], keys: list[str]) -> Verdict:
    missing = _missing(runs, keys)
    why = "; ".join(f"{k}: {runs[k].status}" + (f" ({runs[k].error})" if runs[k].error else "") if k in runs
                    else f"{k}: missing" for k in missing[:4])
    more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
    return Verdict(UNMEASURED, f"Not measured: runs it needs did not finish ({why}{more}).")


def _opening(status: str, model: str) -> str:
    return {HOLDS: f"Holds on {model}", PARTLY: f"Holds in part on {model}",
            FAILS: f"Does not hold on {model}"}[status]


# -- claim 1 --------------------------------------------------------------------------------------------------


def claim1(runs: Mapping[str, RunNumbers], model: str) -> Claim:
    title, statement = CLAIMS[1]
    keys = {(s, p): run_key("magnitude", s, "unstructured", p) for s in CLAIM1_SPARSITIES for p in CLAIM1_RECIPES}
    rows = []
    for (sparsity, preset), key in keys.items():
        run = runs.get(key)
        full = runs.get(keys[(sparsity, "full-ft")])
        if run is None:
            continue
        share = share_of_full(run, full) if preset not in ("none", "full-ft") and usable(full) and usable(run) else None
        trained = run.mode != "none"
        rows.append([f"{sparsity:.0%}", NAMES[preset], run.lr, run.trainable_params if trained else None,
                     run.trainable_fraction if trained else None,
                     run.end_ppl if run.done else run.status, run.recovered, share, run.seconds_per_step,
                     run.train_peak_mb])
    table = Table(["sparsity", "recipe", "lr", "trainable", "trainable %", "perplexity", "recovered",
                   "of full retraining's recovery", "s / step", "train peak MiB"],
                  ["text", "text", "lr", "count", "percent", "ppl", "share", "share", "seconds", "mib"], rows)
    comparable = [s for s in CLAIM1_SPARSITIES
                  if claim1_measured(runs.get(keys[(s, "perp")]), runs.get(keys[(s, "full-ft")]))]
    if not comparable:
        return Claim(1, title, statement, table, _unmeasured(runs, list(keys.values())))
    full = {s: runs[keys[(s, "full-ft")]] for s in comparable}
    perp = {s: runs[keys[(s, "perp")]] for s in comparable}
    norms = {s: runs.get(keys[(s, "norms-only")]) for s in comparable}
    matched = [s for s in comparable if matches_full(perp[s], full[s])]
    memory = highest(ratio(perp[s].train_peak_mb, full[s].train_peak_mb) for s in comparable)
    time = highest(ratio(perp[s].seconds_per_step, full[s].seconds_per_step) for s in comparable)
    cheap = costs_a_fraction(memory, time)
    status = claim1_status(comparable, matched, cheap)
    fraction = next((r.trainable_fraction for r in perp.values() if r.trainable_fraction), None)
    norms_fraction = next((r.trainable_fraction for r in norms.values() if r and r.trainable_fraction), None)
    text = (f"{_opening(status, model)}: `perp` ({fmt(fraction, 'percent')} of the parameters) recovers "
            f"{_shares([share_of_full(perp[s], full[s]) for s in comparable])} of what full retraining recovers at "
            f"{_sparsities(comparable)} sparsity; it matches full retraining (at least {MATCH_SHARE:.0%} of its recovery, "
            f"or a perplexity no higher) at {_sparsities(matched) if matched else 'no sparsity'}"
            f"{'' if len(comparable) == len(CLAIM1_SPARSITIES) else ' (the other sparsities were not measured)'}. "
            f"Its train-stage peak memory is {fmt(memory, 'ratio')} and its time per step {fmt(time, 'ratio')} full "
            f"retraining's (a fraction: at most {COST_MEMORY:g}x and {COST_TIME:g}x"
            f"{'' if cheap else ', not met'}). Norms only ({fmt(norms_fraction, 'percent')}) recovers "
            f"{_shares([share_of_full(norms[s], full[s]) if norms[s] and norms[s].done else None for s in comparable])}"
            f" of full retraining's recovery." + _diverged([*perp.values(), *(n for n in norms.values() if n)]))
    return Claim(1, title, statement, table, Verdict(status, text))


def _diverged(runs: Iterable[RunNumbers]) -> str:
    """`` Diverged (counted as failing): a, b.`` for the repairs that blew up, or nothing."""
    names = [r.key for r in runs if r.diverged]
    return f" Diverged (counted as failing): {', '.join(names)}." if names else ""


# -- claim 2 --------------------------------------------------------------------------------------------------


def claim2(runs: Mapping[str, RunNumbers], model: str) -> Claim:
    title, statement = CLAIMS[2]
    keys = {(s, p): run_key("magnitude", s, "unstructured", p) for s in CLAIM2_SPARSITIES for p in CLAIM2_RECIPES}
    rows = []
    for (sparsity, preset), key in keys.items():
        run, perp, full = runs.get(key), runs.get(keys[(sparsity, "perp")]), runs.get(keys[(sparsity, "full-ft")])
        if run is None:
            continue
        closed = gap_closed(run, perp, full) if perp and full and preset not in ("perp", "full-ft") else None
        after = "kept unmerged" if run.unmerged else run.measured_sparsity
        rows.append([f"{sparsity:.0%}", NAMES[preset], run.trainable_fraction, run.adapter_params if run.unmerged else None,
                     run.end_ppl if run.done else run.status, run.recovered, closed, after, run.seconds_per_step,
                     run.train_peak_mb])
    table = Table(["sparsity", "recipe", "trainable %", "extra params kept unmerged", "perplexity", "recovered",
                   "of perp's gap to full retraining closed", "sparsity after merge", "s / step", "train peak MiB"],
                  ["text", "text", "percent", "count", "ppl", "share", "share", "sparsity", "seconds", "mib"], rows)
    comparable = [s for s in CLAIM2_SPARSITIES
                  if claim2_measured(runs.get(keys[(s, "perp")]), runs.get(keys[(s, "full-ft")]))]
    if not comparable:
        return Claim(2, title, statement, table, _unmeasured(runs, list(keys.values())))
    perp = {s: runs[keys[(s, "perp")]] for s in comparable}
    full = {s: runs[keys[(s, "full-ft")]] for s in comparable}
    closes = {p: [s for s in comparable if runs.get(keys[(s, p)]) and closes_gap(runs[keys[(s, p)]], perp[s], full[s])]
              for p in CLAIM2_ADAPTERS}
    status = claim2_status(comparable, closes)
    no_gap = [s for s in comparable if gap_left(perp[s], full[s]) is None]
    adapters = "; ".join(
        f"{NAMES[p]} ends at {' / '.join(fmt(_ppl(runs.get(keys[(s, p)])), 'ppl') for s in comparable)} (closing "
        f"{_shares([gap_closed(runs[keys[(s, p)]], perp[s], full[s]) if runs.get(keys[(s, p)]) else None for s in comparable])}"
        f" of the gap; closes it at {_sparsities(closes[p]) if closes[p] else 'no sparsity'})" for p in CLAIM2_ADAPTERS)
    sparse = [runs[keys[(s, p)]] for s in comparable for p in CLAIM2_ADAPTERS if runs.get(keys[(s, p)]) and runs[keys[(s, p)]].done]
    text = (f"{_opening(status, model)}: at {_sparsities(comparable)} sparsity perp ends at "
            f"{' / '.join(fmt(perp[s].end_ppl, 'ppl') for s in comparable)} against full retraining's "
            f"{' / '.join(fmt(full[s].end_ppl, 'ppl') for s in comparable)}"
            + (f" (no gap left at {_sparsities(no_gap)}: perp ends within 1% of full retraining or below it)" if no_gap else "")
            + f". {adapters}. Closing the gap: at least {CLOSE_SHARE:.0%} of it, or a perplexity no higher than full "
            f"retraining's. " + _kept(sparse) + _lora([runs.get(keys[(s, "perp-lora")]) for s in comparable])
            + _diverged(sparse))
    return Claim(2, title, statement, table, Verdict(status, text))


def _ppl(run: RunNumbers | None) -> float | None:
    return run.end_ppl if run is not None and run.done else None


def _kept(runs: list[RunNumbers]) -> str:
    """The sentence on whether every merged model has the sparsity of its pruned model (measured after the merge)."""
    by_sparsity = merged_sparsities(runs)
    if not by_sparsity:
        return ""
    listed = ", ".join(f"{' and '.join(fmt(v, 'sparsity') for v in sorted(values))} at {s:.0%}"
                       for s, values in sorted(by_sparsity.items()))
    return (f"Every merged model kept the sparsity of its pruned model ({listed}, measured after the merge; the "
            "pipeline also checks each pruned layer's zeros)." if sparsity_kept(by_sparsity) else
            f"The merged models' sparsities differ within one sparsity level ({listed}).")


def _lora(runs: list[RunNumbers | None]) -> str:
    if not runs or not all(r is not None and r.done for r in runs):
        return ""
    extra, total = runs[0].adapter_params, runs[0].total_params
    ends = " / ".join(fmt(r.end_ppl, "ppl") for r in runs)
    if not stays_unmerged(runs):
        return f" Plain LoRA ends at {ends} and was merged, which this check does not expect."
    return (f" Plain LoRA ends at {ends} but stays unmerged: {extra:,} extra parameters "
            f"({fmt(extra / total if total else None, 'percent')} of the model) computed beside the sparse layers, "
            "since merging would fill every zero.")


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
                         run.trainable_fraction if run.mode != "none" else None, run.end_ppl if run.done else run.status, run.recovered,
                         run.train_seconds, run.train_peak_mb, ratio(run.train_peak_mb, ref_mb)])
    if reference is not None:
        rows.append(["magnitude 50%", "full retraining (memory reference)", reference.trainable_fraction,
                     reference.end_ppl if reference.done else reference.status, reference.recovered,
                     reference.train_seconds, ref_mb, 1.0 if ref_mb else None])
    table = Table(["pruning", "repair", "trainable %", "perplexity", "recovered", "train s", "train peak MiB",
                   "memory vs full retraining"],
                  ["text", "text", "percent", "ppl", "share", "seconds", "mib", "ratio"], rows)
    pruned = {(m, p): runs.get(run_key(m, CLAIM3_SPARSITY, p, "none")) for m, p in CLAIM3_PRUNINGS}

    def finished(mp: tuple[str, str]) -> list[RunNumbers]:
        """The reconstructions with an adapter after pruning ``mp`` that finished."""
        return [runs[run_key(mp[0], CLAIM3_SPARSITY, mp[1], a)] for a in CLAIM3_ADAPTERS if _done(runs, mp, a)]

    comparable = [mp for mp in CLAIM3_PRUNINGS if claim3_measured(pruned[mp], finished(mp))]
    if not comparable or ref_mb is None:
        keys = [run_key(m, CLAIM3_SPARSITY, p, r) for m, p in CLAIM3_PRUNINGS for r in CLAIM3_RECIPES]
        return Claim(3, title, statement, table, _unmeasured(runs, [*keys, run_key(*MEMORY_REFERENCE)]))
    significant = [mp for mp in comparable if significant_gain(highest(r.recovered for r in finished(mp)))]
    adapters = [run for mp in comparable for run in finished(mp)]
    peak = highest(r.train_peak_mb for r in adapters)
    efficient = memory_efficient(peak, ref_mb)
    status = claim3_status(significant, efficient)
    names = ", ".join(_pruning_name(m, p) for m, p in comparable)

    def shares(preset: str) -> str:
        return _shares([runs[run_key(m, CLAIM3_SPARSITY, p, preset)].recovered if _done(runs, (m, p), preset) else None
                        for m, p in comparable])

    text = (f"{_opening(status, model)}: block-wise reconstruction with MaskLoRA recovers {shares('recon-masklora')} "
            f"of the pruning damage of {names} (ScaleLoRA {shares('recon-scalelora')}, norms only "
            f"{shares('recon-norms')}); significant (at least {SIGNIFICANT:.0%} with one of the adapters) for "
            f"{', '.join(_pruning_name(*mp) for mp in significant) or 'none of them'}. With an adapter its train-stage "
            f"peak memory is at most {fmt(peak, 'mib')} MiB, {fmt(ratio(peak, ref_mb), 'ratio')} full retraining's "
            f"{fmt(ref_mb, 'mib')} MiB (memory-efficient: at most {MEMORY_EFFICIENT:g}x: "
            f"{'met' if efficient else 'not met'})." + _diverged(adapters))
    return Claim(3, title, statement, table, Verdict(status, text))


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
