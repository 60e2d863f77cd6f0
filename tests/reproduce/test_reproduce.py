"""`perp reproduce`: the verdicts on made-up numbers (claims that hold, hold in part, do not hold, are undecided at
the budget, cannot be judged), the queueing that reuses and resumes, and the quick set end to end through the store
and real worker processes, twice (the second time nothing is recomputed)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from app_fixtures import made_up, record
from fixtures_tiny import tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)
from reproduce_fixtures import quick_run, reproduce  # noqa: F401  (pytest fixture)

from perp_engine.config import RunConfig
from perp_engine.errors import PerpError
from perp_engine.evaluation.recovery import recovered_share
from perp_engine.jobs import LocalExecutor
from perp_engine.reproduce import (
    FAILS,
    HOLDS,
    PARTLY,
    UNDECIDED,
    UNMEASURED,
    VERDICTS,
    Planned,
    RunSet,
    paper_set,
    queue_set,
)
from perp_engine.reproduce.decisions import (
    CONVERGED,
    COST_MEMORY,
    COST_TIME,
    GAP_MARGIN,
    RULES,
    converged,
    costs_a_fraction,
    gap,
    log_change,
    ratio,
)
from perp_engine.reproduce.figures import build_figures, write_figures
from perp_engine.reproduce.report import load_report, markdown, readme_section, run_numbers
from perp_engine.reproduce.results import RunNumbers
from perp_engine.reproduce.runset import LR_SWEEP, run_key
from perp_engine.reproduce.wording import analyse, baseline, claim1, claim2, claim3, fmt
from perp_engine.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
DENSE = 20.0
PRUNED = {0.5: 40.0, 0.7: 200.0}  # magnitude; Wanda and SparseGPT: 30
# Share of the pruning damage each recipe undoes in the scenario where every claim holds: at 70% full retraining
# (0.8) ends 0.08 x log(10) = 0.18 below perp (0.72) in log-perplexity, well past GAP_MARGIN.
RECOVERED = {"norms-only": 0.48, "perp": 0.72, "full-ft": 0.8, "perp-masklora": 0.78, "perp-scalelora": 0.775,
             "perp-scalelora-paper": 0.74, "perp-lora": 0.78, "recon-masklora": 0.4, "recon-scalelora": 0.3}
SWEPT = {1e-4: 0.7, 5e-4: 0.75}  # full retraining at the swept rates: both behind the preset's 2e-4
MEMORY = {"full-ft": 1000.0, "recon-masklora": 300.0, "recon-scalelora": 310.0}  # else 400 MiB
STEP_S = {"full-ft": 1.0}  # else 0.7 s
CURVE_STEPS = (0, 80, 100)
FLAT = 0.01  # the last two points of every curve of the scenario: 1% apart, within CONVERGED


def final(pruned: float, share: float) -> float:
    """The perplexity of a repair that undoes ``share`` of the damage (log scale)."""
    return math.exp(math.log(pruned) - share * (math.log(pruned) - math.log(DENSE)))


def curve(run: RunNumbers, change: float = FLAT) -> list[dict]:
    """A learning curve at CURVE_STEPS from the pruned perplexity to the final one, whose last two points are
    ``change`` apart in log-perplexity (the curve is still falling by that much)."""
    if run.final_ppl is None or not math.isfinite(run.final_ppl):
        return [{"step": 0, "seconds": 0.0, "ppl": run.pruned_ppl}]
    ppls = (run.pruned_ppl, run.final_ppl * math.exp(change), run.final_ppl)
    return [{"step": s, "seconds": s * (run.seconds_per_step or 1.0), "ppl": p} for s, p in zip(CURVE_STEPS, ppls)]


def scenario(fields: dict[str, dict] | None = None) -> dict[str, RunNumbers]:
    """The numbers of every run of the set in a world where every claim holds, with ``fields`` changed by run
    key, e.g. ``{"magnitude 70% perp": {"final_ppl": 199.0}}``; every retraining gets a learning curve that ends at
    its final perplexity, its last two points FLAT apart unless ``{"falling": change}`` says how far (or
    ``{"curve": [...]}`` gives it)."""
    runs = {}
    for planned in paper_set().runs:
        config = planned.config
        pruned = PRUNED[config.sparsity] if config.method == "magnitude" else 30.0
        preset = config.preset
        run = RunNumbers(key=planned.key, claims=list(planned.claims), preset=preset, method=config.method,
                         sparsity=config.sparsity, pattern=config.pattern, mode=config.mode,
                         lr=None if config.mode == "none" else config.lr,
                         steps=config.steps, status="done", run_id=len(runs) + 1, dense_ppl=DENSE, pruned_ppl=pruned,
                         pruned_sparsity=config.sparsity)
        if config.mode != "none":
            share = SWEPT[config.lr] if preset == "full-ft" and config.lr in SWEPT else RECOVERED[preset]
            run.final_ppl = final(pruned, share)
            run.final_sparsity = config.sparsity
            run.train_peak_mb = MEMORY.get(preset, 400.0)
            run.seconds_per_step = STEP_S.get(preset, 0.7)
            run.trainable_params, run.model_params = 1000, 100_000
            run.trainable_fraction = 0.01
        if preset == "perp-lora":
            run.adapter_params = 1234
            run.notes = ["lora: kept unmerged: merging would make 210 layers dense; extra parameters 1,234"]
        runs[planned.key] = run
    falling = {}
    for key, values in (fields or {}).items():
        for name, value in values.items():
            if name == "falling":
                falling[key] = value
            else:
                setattr(runs[key], name, value)
    for key, run in runs.items():
        if run.mode == "retrain" and "curve" not in (fields or {}).get(key, {}):
            run.curve = curve(run, falling.get(key, FLAT))
    return runs


def mag(sparsity: float, preset: str, lr: float | None = None) -> str:
    return run_key("magnitude", sparsity, "unstructured", preset, lr)


FULL_70 = [mag(0.7, "full-ft"), *(mag(0.7, "full-ft", lr) for lr in LR_SWEEP[("full-ft", 0.7)])]


def recovering(preset_share: dict[tuple[float, str], float]) -> dict[str, dict]:
    return {mag(s, p): {"final_ppl": final(PRUNED[s], share)} for (s, p), share in preset_share.items()}


def failed(*keys: str) -> dict[str, dict]:
    return {k: {"status": "failed", "final_ppl": None, "error": "worker died"} for k in keys}


def falling(change: float, *keys: str) -> dict[str, dict]:
    """Runs whose learning curves still change by ``change`` (log-perplexity) over their last two points."""
    return {k: {"falling": change} for k in keys}


def ppls(values: dict[str, float]) -> dict[str, dict]:
    return {k: {"final_ppl": v} for k, v in values.items()}


def test_the_scenario_is_what_the_claims_need():
    """Every retraining has a curve ending at its perplexity; full retraining has converged, is clearly ahead of
    perp at 70% and is the most expensive; repaired runs keep their pruned sparsity."""
    runs = scenario()
    for run in runs.values():
        if run.mode == "retrain":
            assert [p["step"] for p in run.curve] == list(CURVE_STEPS) and run.curve[-1]["ppl"] == run.final_ppl
            assert converged(run)
        if run.mode != "none":
            assert run.final_sparsity == run.pruned_sparsity == run.sparsity
    for sparsity in PRUNED:
        assert baseline(runs, sparsity) is runs[mag(sparsity, "full-ft")]
        perp, full = runs[mag(sparsity, "perp")], runs[mag(sparsity, "full-ft")]
        memory, time = ratio(perp.train_peak_mb, full.train_peak_mb), ratio(perp.seconds_per_step, full.seconds_per_step)
        assert memory == 0.4 <= COST_MEMORY and time == 0.7 <= COST_TIME and costs_a_fraction(memory, time)
    full = runs[mag(0.7, "full-ft")]
    assert log_change(full.curve[-2]["ppl"], full.curve[-1]["ppl"]) <= CONVERGED
    distance = gap(runs[mag(0.7, "perp")], full)
    assert distance == pytest.approx(0.08 * math.log(10)) and distance >= GAP_MARGIN
    changed = scenario(falling(0.05, mag(0.5, "full-ft")))
    assert not converged(changed[mag(0.5, "full-ft")]) and converged(changed[mag(0.7, "full-ft")])
class Absent(str):
    """A phrase the verdict must not contain."""


FULL_ALL = [mag(0.5, "full-ft"), *FULL_70]
SHIPPED = {mag(0.7, "perp"): 2654.0, mag(0.7, "perp-masklora"): 3094.0, mag(0.7, "perp-scalelora"): 4283.0,
           mag(0.7, "perp-scalelora-paper"): 3500.0, mag(0.7, "perp-lora"): 3100.0, mag(0.7, "full-ft"): 5197.0,
           mag(0.7, "full-ft", 1e-4): 5600.0, mag(0.7, "full-ft", 5e-4): 5400.0}


def shipped(**changed: float) -> dict[str, dict]:
    """The 70% runs as they were shipped (pruned at 20,000, perp already far below full retraining), with
    ``changed`` perplexities by preset (``full_ft`` for the preset rate)."""
    values = dict(SHIPPED)
    for preset, value in changed.items():
        values[mag(0.7, preset.replace("_", "-"))] = value
    return {k: {"pruned_ppl": 20000.0, "final_ppl": v} for k, v in values.items()}


CLAIM1 = [
    ("every sparsity, converged, cheaper", {}, HOLDS,
     ["Holds on TinyLM: full retraining converged at 50/70%.", "recovers 90% / 90% of what full retraining recovers",
      "(perplexity 24.28 / 38.11 against 22.97 / 31.70)", "or a perplexity no higher) at 50/70%.", "0.400x", "0.700x",
      "at most 0.5x and 0.75x: met)"]),
    ("a tenth of full retraining's recovery", recovering({(s, "perp"): 0.08 for s in PRUNED}), FAILS,
     ["recovers 10% / 10%", "at no decided sparsity"]),
    ("only at 50%", recovering({(0.7, "perp"): 0.2}), PARTLY, ["90% / 25%", "no higher) at 50%."]),
    ("as good, more than half the memory", {mag(s, "perp"): {"train_peak_mb": 600.0} for s in PRUNED}, PARTLY,
     ["memory is 0.600x", "at most 0.5x and 0.75x: not met)", "no higher) at 50/70%."]),
    ("more than half the memory at one sparsity", {mag(0.7, "perp"): {"train_peak_mb": 550.0}}, PARTLY,
     ["memory is 0.550x", "not met)"]),  # the highest ratio of the two sparsities
    ("exactly half the memory", {mag(s, "perp"): {"train_peak_mb": 500.0} for s in PRUNED}, HOLDS,
     ["memory is 0.500x", ": met)"]),
    ("as good, slower", {mag(s, "perp"): {"seconds_per_step": 0.8} for s in PRUNED}, PARTLY,
     ["time per step 0.800x", "not met)"]),
    ("memory not measured", {mag(s, "perp"): {"train_peak_mb": None} for s in PRUNED}, PARTLY, ["memory is – and"]),
    ("full retraining still falling at 70%", falling(0.05, mag(0.7, "full-ft")), PARTLY,
     ["Holds in part on TinyLM: full retraining converged at 50%; not at 70% (70%: 33.32 -> 31.70 over its last 20 "
      "steps).", "recovers 90% / 90%", "no higher) at 50%.", "memory is 0.400x"]),
    ("full retraining converged nowhere", falling(0.05, mag(0.5, "full-ft"), mag(0.7, "full-ft")), UNDECIDED,
     ["Undecided at this budget on TinyLM: full retraining converged at no sparsity; not at 50/70% (50%: 24.15 -> "
      "22.97 over its last 20 steps; 70%: 33.32 -> 31.70 over its last 20 steps).", "at no decided sparsity.",
      Absent("peak memory")]),
    ("full retraining without learning curves", {k: {"curve": []} for k in FULL_ALL}, UNDECIDED,
     ["not at 50/70% (50%: no learning curve; 70%: no learning curve)"]),
    ("only a swept rate still falling", falling(0.05, mag(0.7, "full-ft", 1e-4)), HOLDS,
     ["full retraining converged at 50/70%."]),
    ("the sweep's best rate is the baseline", ppls({mag(0.7, "full-ft", 5e-4): 20.0}), PARTLY,
     ["against 22.97 / 20.00", "recovers 90% / 72%", "no higher) at 50%."]),
    ("the preset rate failed, a swept one stands in", failed(mag(0.7, "full-ft")), HOLDS,
     ["against 22.97 / 35.57", "recovers 90% / 96%"]),
    ("perp diverged at 70%", {mag(0.7, "perp"): {"final_ppl": None, "diverged": "final ppl 1e9"}}, PARTLY,
     ["(perplexity 24.28 / – against", "no higher) at 50%.", "Diverged (counted as failing): magnitude 70% perp."]),
    ("full retraining failed everywhere", failed(*FULL_ALL), UNMEASURED,
     ["Not measured", "magnitude 50% full-ft: failed (worker died)"]),
]


CLAIM2 = [
    ("MaskLoRA and ScaleLoRA close the gap", {}, HOLDS,
     ["Holds on TinyLM: at 70% sparsity perp ends at 38.11 against full retraining's 31.70.",
      "MaskLoRA ends at 33.19 (closing 75% of the gap; closes it at 70%)",
      "ScaleLoRA ends at 33.58 (closing 69% of the gap; closes it at 70%)",
      "every merged model kept its pruned model's sparsity", "stays unmerged: 1,234 extra parameters (1.23%"]),
    ("the shipped 70% runs: perp already below full retraining", shipped(), UNDECIDED,
     ["Undecided at this budget on TinyLM: at 70% sparsity perp ends at 2,654.00 against full retraining's 5,197.00 "
      "(no gap to close at 70%", "MaskLoRA ends at 3,094.00;", "ScaleLoRA ends at 4,283.00;", Absent("closes it")]),
    ("a gap, and MaskLoRA ends worse than perp", shipped(full_ft=2000.0, perp_scalelora_paper=2500.0), FAILS,
     ["perp ends at 2,654.00 against full retraining's 2,000.00.",
      "MaskLoRA ends at 3,094.00 (closing -54% of the gap; closes it at no sparsity)"]),
    ("a gap under the margin", ppls({k: final(200.0, 0.72) * math.exp(-0.04) for k in FULL_70}), UNDECIDED,
     ["against full retraining's 36.61 (no gap to close at 70%: full retraining is not at least 0.05 below perp"]),
    ("MaskLoRA falls short", recovering({(0.7, "perp-masklora"): 0.74}), PARTLY,
     ["MaskLoRA ends at 36.39 (closing 25% of the gap; closes it at no sparsity)",
      "ScaleLoRA ends at 33.58 (closing 69% of the gap; closes it at 70%)"]),
    ("no adapter closes it", recovering({(0.7, p): 0.73 for p in ("perp-masklora", "perp-scalelora",
                                                                  "perp-scalelora-paper")}),
     FAILS, ["closing 12% of the gap; closes it at no sparsity); ScaleLoRA"]),
    ("the paper's ScaleLoRA is enough", recovering({(0.7, "perp-scalelora"): 0.72, (0.7, "perp-scalelora-paper"): 0.78}),
     HOLDS, ["ScaleLoRA ends at 38.11 (closing 0% of the gap; closes it at no sparsity)",
             "the paper's ScaleLoRA ends at 33.19 (closing 75% of the gap; closes it at 70%)"]),
    ("a merge that changed the sparsity", {mag(0.7, "perp-masklora"): {"final_sparsity": 0.65}}, PARTLY,
     ["MaskLoRA ends at 33.19 (closing 75% of the gap; closes it at no sparsity)", "MaskLoRA 65.0% (pruned 70.0%)",
      "changed for magnitude 70% perp-masklora."]),
    ("a final sparsity not recorded", {mag(0.7, "perp-masklora"): {"final_sparsity": None}}, PARTLY,
     ["MaskLoRA ends at 33.19 (closing 75% of the gap; closes it at no sparsity)",
      "Not recorded for magnitude 70% perp-masklora.", Absent("MaskLoRA 70.0%")]),
    ("the sweep's best rate is the baseline", ppls({mag(0.7, "full-ft", 5e-4): 20.0}), FAILS,
     ["against full retraining's 20.00.", "MaskLoRA ends at 33.19 (closing 21% of the gap; closes it at no sparsity)"]),
    ("perp failed", failed(mag(0.7, "perp")), UNMEASURED, ["Not measured", "magnitude 70% perp: failed"]),
]


def recon(share: float, presets=("recon-masklora", "recon-scalelora"), prunings=None) -> dict[str, dict]:
    prunings = prunings or [("wanda", "unstructured"), ("wanda", "2:4"), ("sparsegpt", "unstructured"),
                            ("sparsegpt", "2:4")]
    return {run_key(m, 0.5, p, preset): {"final_ppl": final(30.0, share)} for m, p in prunings for preset in presets}


def undamaged(*prunings: tuple[str, str]) -> dict[str, dict]:
    """Prunings that did no damage: pruned and reconstructed at the dense perplexity."""
    return {run_key(m, 0.5, p, preset): {"pruned_ppl": DENSE, "final_ppl": DENSE}
            for m, p in prunings for preset in ("none", "recon-masklora", "recon-scalelora")}


PRUNINGS = [("wanda", "unstructured"), ("wanda", "2:4"), ("sparsegpt", "unstructured"), ("sparsegpt", "2:4")]

CLAIM3 = [
    ("significant and memory-efficient", {}, HOLDS,
     ["MaskLoRA recovers 40% / 40% / 40% / 40%", "(ScaleLoRA 30% / 30% / 30% / 30%)", "310 MiB, 0.310x",
      "at most 0.5x: met)"]),
    ("too much memory", {run_key("wanda", 0.5, "2:4", "recon-scalelora"): {"train_peak_mb": 700.0}}, PARTLY,
     ["700 MiB, 0.700x", "at most 0.5x: not met)"]),
    ("no significant gain", recon(0.1), FAILS, ["for none of them."]),
    ("only after Wanda 50%", {**recon(0.1), **recon(0.3, prunings=[("wanda", "unstructured")])}, PARTLY,
     ["for Wanda 50%."]),
    ("full retraining's memory not measured", failed(mag(0.5, "full-ft")), PARTLY,
     ["for Wanda 50%, Wanda 2:4, SparseGPT 50%, SparseGPT 2:4.", "Its memory against full retraining's was not "
      "measured (magnitude 50% full-ft: failed), so the claim cannot hold in full."]),
    ("no pruning did damage", undamaged(*PRUNINGS), UNDECIDED,
     ["Undecided at this budget on TinyLM:", "recovers – / – / – / –", "for none of them (no damage to recover after "
      "Wanda 50%, Wanda 2:4, SparseGPT 50%, SparseGPT 2:4)."]),
    ("one pruning did no damage", undamaged(("wanda", "2:4")), PARTLY,
     ["for Wanda 50%, SparseGPT 50%, SparseGPT 2:4 (no damage to recover after Wanda 2:4)."]),
    ("every reconstruction failed", failed(*(run_key(m, 0.5, p, a) for m, p in PRUNINGS
                                            for a in ("recon-masklora", "recon-scalelora"))), UNMEASURED,
     ["Not measured", "wanda 50% recon-masklora: failed (worker died)"]),
]


VERDICT_CASES = ([(claim1, *case) for case in CLAIM1] + [(claim2, *case) for case in CLAIM2]
                 + [(claim3, *case) for case in CLAIM3])


@pytest.mark.parametrize("judge, name, fields, status, phrases", VERDICT_CASES,
                         ids=[f"{judge.__name__}-{name}" for judge, name, *_ in VERDICT_CASES])
def test_verdict(judge, name, fields, status, phrases):
    claim = judge(scenario(fields), "TinyLM")
    assert claim.verdict.status == status, claim.verdict.text
    for phrase in phrases:
        if isinstance(phrase, Absent):
            assert phrase not in claim.verdict.text, (phrase, claim.verdict.text)
        else:
            assert phrase in claim.verdict.text, (phrase, claim.verdict.text)


def test_a_missing_final_sparsity_is_not_recorded_and_never_closes_the_gap():
    adapters = ("perp-masklora", "perp-scalelora", "perp-scalelora-paper")
    claim = claim2(scenario({mag(0.7, p): {"final_sparsity": None} for p in adapters}), "TinyLM")
    assert claim.verdict.status == UNMEASURED  # a measurement that is missing is not a failure
    assert claim.verdict.text.startswith("Not measured: there is a gap to close, but no adapter run finished with the "
                                         "sparsity of its final weights recorded (magnitude 70% perp-masklora: sparsity "
                                         "of the final weights not recorded;")
    one = claim2(scenario({mag(0.7, "perp-masklora"): {"final_sparsity": None}}), "TinyLM")
    assert "Not recorded for magnitude 70% perp-masklora." in one.verdict.text
    assert "MaskLoRA ends at 33.19 (closing 75% of the gap; closes it at no sparsity)" in one.verdict.text
    rows = {row[1]: row for row in claim.table.rows}
    assert rows["MaskLoRA"][8:10] == [0.7, None] and rows["plain LoRA"][9] == "kept unmerged"


def test_the_tables_show_each_run_with_what_it_costs():
    one, two, three = analyse(scenario().values(), "TinyLM")
    assert [row[:3] for row in one.table.rows] == [
        ["50%", "no repair", None], ["50%", "norms only", 5e-3], ["50%", "perp", 5e-3],
        ["50%", "full retraining (baseline)", 2e-4], ["70%", "no repair", None], ["70%", "norms only", 5e-3],
        ["70%", "perp", 5e-3], ["70%", "full retraining lr 0.0002 (baseline)", 2e-4],
        ["70%", "full retraining lr 0.0001", 1e-4], ["70%", "full retraining lr 0.0005", 5e-4]]
    assert one.table.rows[0][3:5] == [None, None] and one.table.rows[0][8] is None  # no repair: nothing trained
    perp = one.table.rows[2]
    assert perp[5] == pytest.approx(final(40.0, 0.72)) and perp[6] == pytest.approx(0.72)
    assert perp[7] == pytest.approx(0.9)  # perp at 50%: 90% of full retraining's recovery
    assert perp[8] == pytest.approx(FLAT) and perp[9:] == [0.7, 400.0]  # its curve's last change, s / step, MiB
    assert one.table.rows[3][7] is None and one.table.rows[3][9:] == [1.0, 1000.0]
    assert len(two.table.rows) == 8
    rows = {row[1]: row for row in two.table.rows}
    assert rows["MaskLoRA"][7] == pytest.approx(0.75) and rows["MaskLoRA"][8:10] == [0.7, 0.7]
    assert rows["plain LoRA"][4] == 1234 and rows["plain LoRA"][9] == "kept unmerged"
    assert rows["perp"][7] is None and rows["full retraining lr 0.0002 (baseline)"][2] == 2e-4
    assert [row[2] for row in two.table.rows if row[1] in ("full retraining lr 0.0001", "full retraining lr 0.0005")] == [
        1e-4, 5e-4]
    assert len(three.table.rows) == 13 and three.table.rows[1][1:3] == ["MaskLoRA", 0.01]
    assert three.table.rows[1][6:] == [300.0, pytest.approx(0.3)]
    assert three.table.rows[-1][1] == "full retraining (memory reference)" and three.table.rows[-1][6:] == [1000.0, 1.0]


def test_the_best_rate_of_the_sweep_is_the_baseline_the_tables_mark():
    runs = scenario(ppls({mag(0.7, "full-ft", 5e-4): 20.0}))
    best = runs[mag(0.7, "full-ft", 5e-4)]
    assert baseline(runs, 0.7) is best and baseline(runs, 0.5) is runs[mag(0.5, "full-ft")]
    for claim in (claim1(runs, "TinyLM"), claim2(runs, "TinyLM")):
        marked = [row for row in claim.table.rows if row[1].endswith("(baseline)") and row[0] == "70%"]
        assert [row[1:3] for row in marked] == [["full retraining lr 0.0005 (baseline)", 5e-4]]
        assert [row[2] for row in claim.table.rows if row[1] in ("full retraining lr 0.0002", "full retraining lr 0.0001")
                and row[0] == "70%"] == [2e-4, 1e-4]
    runs = scenario(failed(*FULL_70))  # no usable rate: the preset's run as it is, shown failed
    assert baseline(runs, 0.7) is runs[mag(0.7, "full-ft")]
    assert [row[5] for row in claim2(runs, "TinyLM").table.rows if row[1].startswith("full retraining")] == [
        "failed"] * 3


def test_every_claim_holds_in_the_scenario_and_the_report_says_so():
    claims = analyse(scenario().values(), "TinyLM")
    assert [c.verdict.status for c in claims] == [HOLDS] * 3
    assert all(c.verdict.text.startswith("Holds on TinyLM") for c in claims)
    assert [c.verdict.rule for c in claims] == [RULES[1], RULES[2], RULES[3]]


WORD_FOR_WORD = [  # (judge, fields, runs left out of the set, the verdict's whole sentence)
    (claim1, {}, (),
     "Holds on TinyLM: full retraining converged at 50/70%. `perp` (1% of the model's own parameters) recovers 90% / 90% of what "
     "full retraining recovers at 50/70% sparsity (perplexity 24.28 / 38.11 against 22.97 / 31.70); it matches full "
     "retraining (at least 80% of its recovery, or a perplexity no higher) at 50/70%. Its train-stage peak memory is "
     "0.400x and its time per step 0.700x full retraining's (a fraction: at most 0.5x and 0.75x: met). Norms only (1%) "
     "recovers 60% / 60% of full retraining's recovery."),
    (claim1, falling(0.05, mag(0.7, "full-ft")), (),
     "Holds in part on TinyLM: full retraining converged at 50%; not at 70% (70%: 33.32 -> 31.70 over its last 20 "
     "steps). `perp` (1% of the model's own parameters) recovers 90% / 90% of what full retraining recovers at 50/70% sparsity "
     "(perplexity 24.28 / 38.11 against 22.97 / 31.70); it matches full retraining (at least 80% of its recovery, or "
     "a perplexity no higher) at 50%. Its train-stage peak memory is 0.400x and its time per step 0.700x full "
     "retraining's (a fraction: at most 0.5x and 0.75x: met). Norms only (1%) recovers 60% / 60% of full "
     "retraining's recovery."),
    (claim1, failed(*FULL_ALL), (mag(0.5, "none"),),
     "Not measured: runs it needs did not finish (magnitude 50% none: missing; magnitude 50% full-ft: failed (worker "
     "died); magnitude 70% full-ft: failed (worker died))."),
    (claim2, {}, (),
     "Holds on TinyLM: at 70% sparsity perp ends at 38.11 against full retraining's 31.70. MaskLoRA ends at 33.19 "
     "(closing 75% of the gap; closes it at 70%); ScaleLoRA ends at 33.58 (closing 69% of the gap; closes it at 70%); "
     "the paper's ScaleLoRA ends at 36.39 (closing 25% of the gap; closes it at no sparsity). Closing the gap: ending "
     "below perp with at least 50% of it closed, or a perplexity no higher than full retraining's, with the pruned model's zeros counted in the final weights. Zeros counted in "
     "the final weights after the merge: MaskLoRA 70.0% (pruned 70.0%), ScaleLoRA 70.0% (pruned 70.0%), the paper's "
     "ScaleLoRA 70.0% (pruned 70.0%): every merged model kept its pruned model's sparsity. Plain LoRA ends at 33.19 "
     "but stays unmerged: 1,234 extra parameters (1.23% of the model's own parameters) computed beside the sparse "
     "layers, since merging would fill every zero."),
    (claim2, shipped(), (),
     "Undecided at this budget on TinyLM: at 70% sparsity perp ends at 2,654.00 against full retraining's 5,197.00 "
     "(no gap to close at 70%: full retraining is not at least 0.05 below perp in log-perplexity, so no adapter can "
     "be judged there). MaskLoRA ends at 3,094.00; ScaleLoRA ends at 4,283.00; the paper's ScaleLoRA ends at "
     "3,500.00. Closing the gap: ending below perp with at least 50% of it closed, or a perplexity no higher than "
     "full retraining's, with the pruned model's zeros counted in the final weights. Zeros counted in the final "
     "weights after the merge: MaskLoRA 70.0% (pruned 70.0%), "
     "ScaleLoRA 70.0% (pruned 70.0%), the paper's ScaleLoRA 70.0% (pruned 70.0%): every merged model kept its pruned "
     "model's sparsity. Plain LoRA ends at 3,100.00 but stays unmerged: 1,234 extra parameters (1.23% of the model's "
     "own parameters) computed beside the sparse layers, since merging would fill every zero."),
    (claim3, {}, (),
     "Holds on TinyLM: block-wise reconstruction with MaskLoRA recovers 40% / 40% / 40% / 40% of the log-ppl gap "
     "(the pruning damage) of Wanda 50%, Wanda 2:4, SparseGPT 50%, SparseGPT 2:4 (ScaleLoRA 30% / 30% / 30% / 30%); significant (at least "
     "25% with one of the adapters) for Wanda 50%, Wanda 2:4, SparseGPT 50%, SparseGPT 2:4. With an adapter its "
     "train-stage peak memory is at most 310 MiB, 0.310x full retraining's 1,000 MiB (memory-efficient: at most 0.5x: "
     "met)."),
    (claim3, {}, (mag(0.5, "full-ft"),),
     "Holds in part on TinyLM: block-wise reconstruction with MaskLoRA recovers 40% / 40% / 40% / 40% of the log-ppl "
     "gap (the pruning damage) of Wanda 50%, Wanda 2:4, SparseGPT 50%, SparseGPT 2:4 (ScaleLoRA 30% / 30% / 30% / 30%); significant (at "
     "least 25% with one of the adapters) for Wanda 50%, Wanda 2:4, SparseGPT 50%, SparseGPT 2:4. Its memory against "
     "full retraining's was not measured (magnitude 50% full-ft: missing), so the claim cannot hold in full."),
]


@pytest.mark.parametrize("judge, fields, without, text", WORD_FOR_WORD,
                         ids=[f"{judge.__name__}-{i}" for i, (judge, *_) in enumerate(WORD_FOR_WORD)])
def test_the_verdicts_word_for_word(judge, fields, without, text):
    """Each verdict's whole sentence, to the character (the cases above check phrases of it)."""
    runs = {k: r for k, r in scenario(fields).items() if k not in without}
    assert judge(runs, "TinyLM").verdict.text == text


@pytest.mark.parametrize("value, kind, text", [
    (None, "ppl", "–"), (math.nan, "share", "–"), ("failed", "ppl", "failed"), (12345.678, "ppl", "12,345.68"),
    (123456.0, "ppl", "1.23e+05"), (0.000123, "percent", "0.0123%"), (0.756, "share", "76%"),
    (0.6543, "sparsity", "65.4%"), (5e-3, "lr", "0.005"), (0.314, "ratio", "0.31x"), (1234.0, "count", "1,234"),
    (1234.6, "mib", "1,235"), (1.234, "seconds", "1.23"), (7, "text", "7")])
def test_each_cell_reads_as_its_column_says(value, kind, text):
    assert fmt(value, kind) == text


@pytest.mark.parametrize("dense, pruned, end, expected", [
    (10.0, 100.0, 10.0, 1.0), (10.0, 100.0, 100.0, 0.0), (10.0, 100.0, math.sqrt(1000.0), 0.5),
    (10.0, 100.0, 1000.0, -1.0), (10.0, 10.05, 10.0, None), (10.0, None, 10.0, None), (10.0, 100.0, math.inf, None)])
def test_recovered_share(dense, pruned, end, expected):
    value = recovered_share(dense, pruned, end)
    assert value == expected if expected is None else value == pytest.approx(expected)


def test_the_set_is_the_issue_s_set():
    runset = paper_set()
    keys = [p.key for p in runset.runs]
    assert len(keys) == len(set(keys)) == 26
    by_key = {p.key: p for p in runset.runs}
    by_claim = {n: [p.key for p in runset.runs if n in p.claims] for n in (1, 2, 3)}
    assert len(by_claim[1]) == 10 and len(by_claim[2]) == 8 and len(by_claim[3]) == 13
    assert set(by_claim[1]) == {mag(s, p) for s in (0.5, 0.7) for p in ("none", "norms-only", "perp", "full-ft")} | {
        mag(0.7, "full-ft", 1e-4), mag(0.7, "full-ft", 5e-4)}
    assert set(by_claim[2]) == {mag(0.7, p) for p in ("perp", "perp-masklora", "perp-scalelora", "perp-scalelora-paper",
                                                      "perp-lora", "full-ft")} | {
        "magnitude 70% full-ft lr 0.0001", "magnitude 70% full-ft lr 0.0005"}
    assert set(by_claim[3]) == {run_key(m, 0.5, p, r) for m in ("wanda", "sparsegpt") for p in ("unstructured", "2:4")
                                for r in ("none", "recon-masklora", "recon-scalelora")} | {mag(0.5, "full-ft")}
    assert [by_key[k].claims for k in (mag(0.7, "perp"), mag(0.7, "full-ft"), mag(0.5, "full-ft"))] == [
        (1, 2), (1, 2), (1, 3)]
    for planned in runset.runs:
        config = planned.config
        assert config.seqlen == 128 and config.batch_size == 4 and config.calib_samples == 16
        if config.mode == "retrain":
            assert (config.steps, config.eval_every) == (100, 20), planned.key
        elif config.mode == "reconstruct":
            assert (config.steps, config.eval_every) == (50, 10), planned.key
        else:
            assert config.mode == "none" and planned.config.preset == "none"
    assert {p.config.mode for p in runset.runs} == {"none", "retrain", "reconstruct"}
    assert {p.config.preset: p.config.lr for p in runset.runs if p.key in by_claim[1] and p.config.mode != "none"
            and "lr" not in p.key.split()} == {"norms-only": 5e-3, "perp": 5e-3, "full-ft": 2e-4}
    assert sorted(by_key[k].config.lr for k in FULL_70) == [1e-4, 2e-4, 5e-4]
    assert {by_key[k].config.preset for k in FULL_70} == {"full-ft"}
    assert RunSet.from_dict(json.loads(json.dumps(runset.to_dict()))) == runset


# -- queueing: reuse, waiting, resubmitting -----------------------------------------------------------------


@pytest.fixture
def four(tiny_model_dir, tiny_text_file):  # noqa: F811
    """A set of four runs of the tiny model."""
    runs = tuple(Planned(key=f"run {i}", claims=(1,), config=RunConfig.create(
        "none", model=str(tiny_model_dir), dataset=str(tiny_text_file), seqlen=16, calib_samples=4, eval_tokens=64,
        sparsity=0.1 * (i + 1))) for i in range(4))
    return RunSet(model=str(tiny_model_dir), dataset=str(tiny_text_file), sizes={}, quick=True, runs=runs)


class NoWorkers(LocalExecutor):
    """Queues runs without starting worker processes; counts the calls that would start them."""

    started = 0

    def ensure_workers(self):
        self.started += 1
        return []


class Driving(NoWorkers):
    detached = False  # like Ray: runs left queued by others are not waited for


def seed_states(store: RunStore, runset: RunSet) -> None:
    """run 0 done, run 1 failed, run 2 queued, run 3 never ran."""
    configs = [p.config for p in runset.runs]
    record(store, configs[0], made_up(configs[0], 10.0, 20.0))
    failed_id = store.create_run(configs[1])
    store.start_run(failed_id)
    store.fail_run(failed_id, "worker died")
    store.create_run(configs[2])


@pytest.mark.parametrize("executor_class, waiting, submitted", [
    (NoWorkers, ["run 2"], ["run 1", "run 3"]), (Driving, [], ["run 1", "run 2", "run 3"])])
def test_queue_reuses_finished_runs_waits_for_queued_ones_and_resubmits_the_rest(
        executor_class, waiting, submitted, four, tmp_path):
    executor = executor_class(tmp_path / "runs.sqlite")
    seed_states(executor.store, four)
    queued = queue_set(four, executor, executor.store)
    assert (queued.reused, queued.waiting, queued.submitted) == (["run 0"], waiting, submitted)
    rows = {key: executor.store.get_run(run_id) for key, run_id in queued.run_ids.items()}
    assert rows["run 0"].status == "done" and all(rows[k].status == "queued" for k in [*waiting, *submitted])
    assert [r.id for r in executor.store.sweep_runs(queued.sweep_id)] == [queued.run_ids[k] for k in submitted]
    assert len(executor.store.list_runs()) == 3 + len(submitted)
    if executor_class is Driving:  # the leftover queued run was cancelled, not left for nobody
        assert len(executor.store.list_runs(status="cancelled")) == 1


def test_queue_checks_every_config_before_recording_anything(four, tmp_path):
    executor = NoWorkers(tmp_path / "runs.sqlite")

    def check(config):
        if config.sparsity > 0.35:
            raise PerpError("sparsity", "refused by the check")

    with pytest.raises(PerpError, match="refused"):
        queue_set(four, executor, executor.store, check=check)
    assert executor.store.list_runs() == [] and executor.store.list_sweeps() == []


# -- the quick set end to end -------------------------------------------------------------------------------


def test_quick_runs_the_whole_set_and_writes_the_report(quick_run):  # noqa: F811
    assert quick_run.code == 0, quick_run.output
    report = load_report(quick_run.out / "report.json")
    runs = report["runs"]
    assert len(runs) == 26 and {r["status"] for r in runs} == {"done"}
    store = RunStore(quick_run.store)
    assert {r.status for r in store.list_runs()} == {"done"} and len(store.list_runs()) == 26
    assert [c["verdict"]["status"] in VERDICTS for c in report["claims"]] == [True] * 3
    assert [len(c["table"]["rows"]) for c in report["claims"]] == [10, 8, 13]
    assert report["set"]["quick"] and report["estimate_seconds"] > 0
    numbers = run_numbers(report)
    lora = numbers[mag(0.7, "perp-lora")]
    assert lora.unmerged and lora.adapter_params > 0
    assert numbers[mag(0.7, "perp-masklora")].final_sparsity == pytest.approx(0.7, abs=0.01)
    assert numbers[mag(0.5, "full-ft")].trainable_fraction > 0.99
    assert all(r.train_peak_mb and r.seconds_per_step for r in numbers.values() if r.mode != "none")
    text = (quick_run.out / "report.md").read_text()
    for claim in report["claims"]:
        assert f"**Verdict: {claim['verdict']['status']}.** {claim['verdict']['text']}" in text
    for name, files in report["figures"].items():
        assert (quick_run.out / files["html"]).is_file()
        assert files["png"] is None or (quick_run.out / files["png"]).stat().st_size > 10_000
    assert (report["png_note"] is None) == all(f["png"] for f in report["figures"].values())
    assert "26 submitted" in quick_run.output and "Claim 3" in quick_run.output


def test_a_second_quick_run_recomputes_nothing(quick_run, tmp_path):  # noqa: F811
    store = RunStore(quick_run.store)
    before = ([r.id for r in store.list_runs()], store.list_sweeps())
    code, output = reproduce(["--quick", "--out", str(tmp_path / "again"), "--store", str(quick_run.store)],
                             quick_run.home)
    assert code == 0, output
    assert "26 finished before (reused from the store), 0 already queued or running, 0 submitted." in output
    assert ([r.id for r in store.list_runs()], store.list_sweeps()) == before
    first, second = load_report(quick_run.out / "report.json"), load_report(tmp_path / "again" / "report.json")
    assert second["runs"] == first["runs"] and second["claims"] == first["claims"]


def test_without_a_browser_the_report_has_html_figures_and_says_why(quick_run, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr("perp_engine.reproduce.figures.find_browser", lambda: None)
    report = load_report(quick_run.out / "report.json")
    files, note = write_figures(build_figures(run_numbers(report)), tmp_path)
    assert all((tmp_path / f["html"]).is_file() and f["png"] is None for f in files.values())
    assert not list(tmp_path.glob("*.png")) and "no Chrome or Chromium" in note
    report["figures"], report["png_note"] = files, note
    assert "no Chrome or Chromium" in markdown(report) and "](overview.html)" not in markdown(report)
    assert "Figure: [claim1.html](docs/paper/claim1.html)" in readme_section(report, "docs/paper/")


def test_dry_run_lists_the_set_and_its_estimate(quick_run):  # noqa: F811
    code, output = reproduce(["--quick", "--dry-run", "--store", str(quick_run.store)], quick_run.home)
    assert code == 0
    assert output.count(" min alone") == 26 and "26 runs, sizes" in output and "cost-model estimate" in output


def test_the_readme_section_is_filled_from_the_report(quick_run):  # noqa: F811
    """scripts/paper_readme.py puts the report's verdicts and tables between the README's markers."""
    spec = importlib.util.spec_from_file_location("paper_readme", ROOT / "scripts" / "paper_readme.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    readme = (ROOT / "README.md").read_text()
    assert readme.count(script.START) == 1 and readme.count(script.END) == 1
    report = load_report(quick_run.out / "report.json")
    filled = script.fill(readme, readme_section(report, "docs/paper/"))
    inside = filled.split(script.START)[1].split(script.END)[0]
    for claim in report["claims"]:
        assert f"**Verdict: {claim['verdict']['status']}.** {claim['verdict']['text']}" in inside
    assert "![PERP's three claims](docs/paper/overview.png)" in inside or report["png_note"]
    assert filled.split(script.START)[0] == readme.split(script.START)[0]
    assert filled.split(script.END)[1] == readme.split(script.END)[1]
    assert script.fill(filled, "again").split(script.START)[1].split(script.END)[0] == "\nagain\n"


def test_quick_runs_on_ray_too(ray_local, tmp_path):
    """The same set as Ray tasks on the session's local Ray instance: every run done, the report written."""
    code, output = reproduce(["--quick", "--executor", "ray", "--out", str(tmp_path / "report"),
                              "--store", str(tmp_path / "runs.sqlite")], tmp_path / "home")
    assert code == 0, output
    rows = RunStore(tmp_path / "runs.sqlite").list_runs()
    assert len(rows) == 26 and {r.status for r in rows} == {"done"}
    assert all(RunStore(tmp_path / "runs.sqlite").logs(r.id)[0].startswith("started on Ray node") for r in rows)
    assert len(load_report(tmp_path / "report" / "report.json")["claims"]) == 3
