"""The reproduction's report: one dict (report.json) assembled from the runs' numbers, and its Markdown
(report.md, and the README's section) and figures written beside it.

report.json holds everything the app's Paper page shows, so the page needs no store and no model to show the
shipped results: the run set (every config), each run's numbers, the three claims with their tables and
verdicts, the thresholds, the learning rates and where they come from, the sizes and the cost-model estimate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path

from ..errors import PerpError
from ..presets import LR_ORIGIN, PRESETS
from ..store import RunRow
from .accuracy import zero_shot_tables
from .decisions import THRESHOLDS
from .figures import build_figures, write_figures
from .results import RunNumbers, numbers_of
from .runset import LR_SWEEP, RunSet
from .wording import Claim, Table, analyse, fmt, recipe_names

REPORT_FORMAT = 2  # 2: verdicts with rules and "undecided", learning curves, final sparsity, lr sweeps
REPORT_JSON, REPORT_MD = "report.json", "report.md"
COMMAND = "perp reproduce"


def model_name(runset: RunSet) -> str:
    """How the verdicts name the model."""
    if runset.quick:
        return "the tiny test model (--quick: a 2-block LLaMA trained for a second; its numbers say nothing about real models)"
    return {"smollm2-135m": "SmolLM2-135M"}.get(runset.model, runset.model)


def assemble(runset: RunSet, rows: Mapping[str, RunRow | None], *, estimate_seconds: float | None = None,
             wall_seconds: float | None = None, command: str = COMMAND) -> dict:
    """The report of ``runset`` from the latest store row of each of its runs (by key; None = never ran)."""
    runs = [numbers_of(p, rows.get(p.key)) for p in runset.runs]
    claims = analyse(runs, model_name(runset))
    for claim in claims:
        claim.zero_shot = zero_shot_tables(claim.number, runs)
    env = next((r.environment for r in rows.values() if r is not None and r.status == "done" and r.environment), {})
    return {
        "format": REPORT_FORMAT,
        "title": f"PERP's three claims on {model_name(runset)}",
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": command,
        "set": runset.to_dict(),
        "estimate_seconds": estimate_seconds,
        "wall_seconds": wall_seconds,
        "compute_seconds": sum(r.duration or 0.0 for r in runs if r.done),
        "curve_seconds": sum(r.curve_seconds for r in runs if r.done),
        "load": load_summary(rows.values()),
        "environment": env,
        "runs": [r.to_dict() for r in runs],
        "claims": [c.to_dict() for c in claims],
        "thresholds": {name: {"value": value, "meaning": meaning} for name, (value, meaning) in THRESHOLDS.items()},
        "learning_rates": {p: {"lr": PRESETS[p]["lr"], "origin": LR_ORIGIN[p]}
                           for p in dict.fromkeys(r.preset for r in runs) if "lr" in PRESETS.get(p, {})},
        "lr_sweep": [{"preset": preset, "sparsity": sparsity, "rates": list(rates)}
                     for (preset, sparsity), rates in LR_SWEEP.items()],
        "recipes": recipe_names(),
        "figures": {},
        "png_note": None,
    }


def load_summary(rows) -> dict | None:
    """The machine's load average as the finished runs recorded it at their ends (1 and 15 minutes): how many
    runs recorded one, the median and the highest; None when none did."""
    loads = [r.environment["load_average"] for r in rows
             if r is not None and r.status == "done" and r.environment and r.environment.get("load_average")]
    if not loads:
        return None
    fifteen = sorted(load[2] for load in loads)
    return {"runs": len(loads), "median_15min": fifteen[len(fifteen) // 2], "max_1min": max(load[0] for load in loads)}


def load_line(report: Mapping) -> str:
    """What the report says of the machine's load while its runs ran."""
    load = report.get("load")
    if not load:
        return "The runs did not record the machine's load."
    return (f"Load average at the end of {load['runs']} of its runs: median {load['median_15min']:.2f} over 15 min, "
            f"highest {load['max_1min']:.2f} over 1 min (on {report.get('environment', {}).get('threads', '?')} "
            "threads; above that count, runs competed for the cores and their seconds are inflated).")


def rates_lines(report: Mapping) -> list[str]:
    """How the learning rates were chosen: each recipe's preset rate and where it comes from, then the sweeps."""
    lines = ["Every retraining recipe trains the same number of steps at its preset's learning rate:", ""]
    lines += [f"- `{p}` {v['lr']:g}: {v['origin']}" for p, v in report["learning_rates"].items()]
    for sweep in report.get("lr_sweep", []):
        lines += ["", f"`{sweep['preset']}` at {sweep['sparsity']:.0%} also ran at "
                      f"{' and '.join(f'{r:g}' for r in sweep['rates'])}: the verdicts compare with the best of its "
                      "rates there (marked baseline in the tables), not with one a rate held back."]
    return lines


def run_numbers(report: Mapping) -> dict[str, RunNumbers]:
    return {r["key"]: RunNumbers.from_dict(r) for r in report["runs"]}


def claims_of(report: Mapping) -> list[Claim]:
    return [Claim.from_dict(c) for c in report["claims"]]


def write_report(report: dict, folder: str | Path) -> dict:
    """Write the figures, report.json and report.md into ``folder`` (created); returns the report with its
    figure files (and why there are no PNGs, when there are none)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    report["figures"], report["png_note"] = write_figures(build_figures(run_numbers(report)), folder)
    (folder / REPORT_JSON).write_text(json.dumps(report, indent=1) + "\n")
    (folder / REPORT_MD).write_text(markdown(report))
    return report


def load_report(path: str | Path) -> dict:
    """A report.json written by :func:`write_report`; PerpError when it is not one."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PerpError("report", f"cannot read {path}: {err}") from None
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise PerpError("report", f"{path} is not a report of `{COMMAND}` (format {REPORT_FORMAT})")
    return report


# -- Markdown -------------------------------------------------------------------------------------------------


def table_markdown(table: Table) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(fmt(v, f) for v, f in zip(row, table.formats)) + " |" for row in table.rows]
    return "\n".join(lines)


def claims_markdown(report: Mapping, figure_dir: str = "", level: str = "##") -> str:
    """Each claim: the paper's words, the verdict, the table, its zero-shot tables when its runs were scored, the
    figure (PNG when there is one, else a link to the HTML); figure paths start with ``figure_dir``."""
    parts = []
    for claim in claims_of(report):
        parts += [f"{level} Claim {claim.number}: {claim.title}", "", f"> {claim.statement}", "",
                  f"**Verdict: {claim.verdict.status}.** {claim.verdict.text}", ""]
        if claim.verdict.rule:
            parts += [f"*Rule:* {claim.verdict.rule}", ""]
        parts += [table_markdown(claim.table), ""]
        for accuracy in claim.zero_shot:
            parts += [f"Zero-shot accuracy in points, ± standard error ({accuracy.note}):", "",
                      table_markdown(accuracy.table), ""]
        for name in (f"claim{claim.number}", f"curves{claim.number}"):
            figure = report.get("figures", {}).get(name, {})
            if figure.get("png"):
                parts += [f"![{name}]({figure_dir}{figure['png']})", ""]
            elif figure.get("html"):
                parts += [f"Figure: [{figure['html']}]({figure_dir}{figure['html']})", ""]
    return "\n".join(parts)


def sizes_line(report: Mapping) -> str:
    runset = report["set"]
    sizes = runset["sizes"]
    estimate = report.get("estimate_seconds")
    recon = (f"reconstruction {sizes['recon_steps']} steps per block" if "recon_steps" in sizes else
             "reconstruction the same per block")
    curves = (f"; a held-out learning-curve point every {sizes['eval_every']} steps (reconstruction: every "
              f"{sizes.get('recon_eval_every', sizes['eval_every'])} steps of each block)" if sizes.get("eval_every") else "")
    return (f"{len(runset['runs'])} runs of {runset['model']} on {runset['dataset']}: {sizes['steps']} steps of "
            f"{sizes['batch_size']} x {sizes['seqlen']} tokens per retraining recipe, {recon}{curves}, "
            f"{sizes['calib_samples']} calibration windows of {sizes['seqlen']} tokens, perplexity on "
            f"{sizes['eval_tokens']:,} held-out tokens; seed 0."
            + (f" Cost-model estimate of the whole set on this machine's device: {estimate / 60:.0f} min "
               "(perp_engine.resources.estimate, counting shared dense and pruned models once)." if estimate else ""))


def markdown(report: Mapping) -> str:
    """report.md: how it was made, the three claims, how the rates were chosen, the thresholds, every run."""
    env = report.get("environment", {})
    wall = report.get("wall_seconds")
    lines = [
        f"# {report['title']}", "",
        f"Made by `{report['command']}` on {report['created']}: {env.get('platform', '?')}, "
        f"device {env.get('device', '?')}, {env.get('threads', '?')} threads, torch {env.get('torch', '?')}, "
        f"transformers {env.get('transformers', '?')}.", "",
        sizes_line(report) + f" The runs took {report['compute_seconds'] / 60:.1f} min of compute (learning-curve "
        f"points {report.get('curve_seconds', 0.0) / 60:.1f} min of it)"
        + (f"; this invocation waited {wall / 60:.1f} min (runs found finished in the store were reused)." if wall else ".")
        + " " + load_line(report),
        "",
    ]
    if report.get("png_note"):
        lines += [f"*{report['png_note']}.*", ""]
    figure = report.get("figures", {}).get("overview", {})
    if figure.get("png"):
        lines += [f"![Overview]({figure['png']})", ""]
    lines += [claims_markdown(report), "## Recipes and learning rates", "", *rates_lines(report)]
    lines += ["", "The recipes, by the names the tables give them:", ""]
    lines += [f"- {r['name']} (`{p}`): {r['description']}" for p, r in report["recipes"].items()]
    lines += ["", "## Thresholds", ""]
    lines += [f"- `{name}` = {t['value']:g}: {t['meaning']}" for name, t in report["thresholds"].items()]
    lines += ["", "## Runs", "", "| run | store id | claims | status | minutes |", "|---|---|---|---|---|"]
    for r in report["runs"]:
        status = r["status"] + (f": diverged ({r['diverged']})" if r.get("diverged") else "") + (
            f": {r['error']}" if r.get("error") else "")
        minutes = None if r.get("duration") is None else r["duration"] / 60
        lines.append(f"| {r['key']} | {r['run_id'] or '–'} | {', '.join(map(str, r['claims']))} | {status} | "
                     f"{fmt(minutes, 'seconds')} |")
    return "\n".join(lines) + "\n"


def readme_section(report: Mapping, figure_dir: str) -> str:
    """The README's "Reproducing the paper" results: sizes, the overview figure, each claim (figures under
    ``figure_dir``, e.g. ``docs/paper/``)."""
    overview = report.get("figures", {}).get("overview", {})
    lines = [sizes_line(report), ""]
    if overview.get("png"):
        lines += [f"![PERP's three claims]({figure_dir}{overview['png']})", ""]
    return "\n".join([*lines, claims_markdown(report, figure_dir, level="####")])

