"""Build the gallery the app opens read-only beside the user's store: the reproduction's runs (the store of
`perp reproduce --out docs/paper --store docs/paper/store/runs.sqlite`) plus the methods table's prune-only runs.

    nice -n 10 .venv/bin/python scripts/build_gallery.py            # runs what is missing, rewrites the gallery
    .venv/bin/python scripts/build_gallery.py --work DIR --gallery PATH

The gallery file is copied into a work store (``--work``, default ``$PERP_HOME/gallery-build``; its artifact cache
stays there), the methods runs it lacks run there with the local executor (the embedded model, the reproduction's
sizes ``FULL_SIZES``, so they compare with its runs; a point the reproduction already ran is that run), the runs are
tagged (``paper reproduction``, ``methods table``) and the work store is written back compacted (VACUUM INTO, a
rollback journal: one file that SQLite can open immutable), also when it was of an older schema. Run again, it finds
every run there and changes nothing.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.paper_view import SHIPPED, read_shipped, runset_of  # noqa: E402
from app.run_sources import GALLERY  # noqa: E402
from perp_engine.config import DEFAULT_MODEL, RunConfig  # noqa: E402
from perp_engine.jobs import LocalExecutor  # noqa: E402
from perp_engine.jobs.local import portable_config  # noqa: E402
from perp_engine.paths import perp_home  # noqa: E402
from perp_engine.reproduce import latest_rows  # noqa: E402
from perp_engine.reproduce.runset import DEFAULT_DATASET, RECON_SIZES, RunSet  # noqa: E402
from perp_engine.resources.memory_meter import MIB  # noqa: E402
from perp_engine.store import SCHEMA_VERSION, RunStore  # noqa: E402
from perp_engine.store.schema import schema_version  # noqa: E402

SPARSITY = 0.5
# The methods table (bench/results/methods_bench-cpu.md) as runs: each score at 50% and 2:4, and OWL at 50%.
METHODS = (("magnitude", "unstructured", "uniform"), ("magnitude", "2:4", "uniform"),
           ("wanda", "unstructured", "uniform"), ("wanda", "2:4", "uniform"),
           ("sparsegpt", "unstructured", "uniform"), ("sparsegpt", "2:4", "uniform"),
           ("ria", "unstructured", "uniform"), ("ria", "2:4", "uniform"),
           ("wanda", "unstructured", "owl"), ("sparsegpt", "unstructured", "owl"))
PAPER_TAG, METHODS_TAG = "paper reproduction", "methods table"
SWEEP_NAME = "methods table"


def methods_plan(paper: RunSet) -> dict[str, RunConfig]:
    """Each methods point's config by key (``wanda + OWL 50%``): the reproduction's prune-only run of that point
    where it has one (so it is that run, zero-shot scores included), else a prune-only run at its sizes."""
    sizes = {k: v for k, v in paper.sizes.items() if k not in RECON_SIZES}
    shipped = {(p.config.method, p.config.pattern, p.config.allocation): p.config for p in paper.runs
               if p.config.preset == "none" and p.config.sparsity == SPARSITY}
    plan = {}
    for method, pattern, allocation in METHODS:
        key = f"{method}{' + OWL' if allocation == 'owl' else ''} {pattern if pattern != 'unstructured' else '50%'}"
        plan[key] = shipped.get((method, pattern, allocation)) or RunConfig.create(
            "none", model=paper.model, dataset=paper.dataset, method=method, sparsity=SPARSITY, pattern=pattern,
            allocation=allocation, device="auto", **sizes)
    return plan


def copy_store(source: Path, target: Path) -> None:
    """``source`` copied to ``target`` (and its -wal/-shm left over from an earlier build removed first)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def older_schema(path: Path) -> bool:
    """Whether the store file at ``path`` is of a schema older than this code's."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return schema_version(conn) < SCHEMA_VERSION
    finally:
        conn.close()


def write_gallery(store: RunStore, gallery: Path) -> None:
    """The work store compacted into ``gallery`` (atomically), with a rollback journal (not WAL)."""
    temp = gallery.with_name(f".{gallery.name}.{os.getpid()}.tmp")
    temp.unlink(missing_ok=True)
    conn = sqlite3.connect(store.path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM INTO ?", (str(temp),))
    finally:
        conn.close()
    out = sqlite3.connect(temp)
    try:
        out.execute("DELETE FROM workers")
        out.commit()
        mode = out.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
        out.execute("VACUUM")
    finally:
        out.close()
    if mode != "delete":
        raise SystemExit(f"{temp}: journal mode {mode}, not delete")
    os.replace(temp, gallery)


def tag(store: RunStore, run_ids: list[int], name: str) -> bool:
    """Add tag ``name`` to these runs; True if some run lacked it."""
    changed = False
    for run_id in run_ids:
        tags = store.get_run(run_id).tags
        if name not in tags:
            store.set_tags(run_id, [*tags, name])
            changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=Path, default=GALLERY, help=f"the gallery file (default {GALLERY})")
    parser.add_argument("--report", type=Path, default=SHIPPED, help="the report whose run set is the reproduction")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default $PERP_HOME/gallery-build)")
    args = parser.parse_args(argv)
    report, why = read_shipped(args.report)
    if report is None:
        raise SystemExit(why)
    paper = runset_of(report)
    if paper.model != DEFAULT_MODEL or paper.dataset != DEFAULT_DATASET:
        raise SystemExit(f"{args.report}: the set runs {paper.model} on {paper.dataset}, not the embedded model")
    work = (args.work or perp_home() / "gallery-build").resolve()
    store_path = work / "runs.sqlite"
    copy_store(args.gallery, store_path)
    older = older_schema(args.gallery)  # the work store is migrated when opened: then it is written back
    store = RunStore(store_path)
    executor = LocalExecutor(store_path)
    plan = methods_plan(paper)
    ids, submitted = {}, []
    for key, config in plan.items():
        row = store.latest_with_config(portable_config(config))
        if row is not None and row.status == "done":
            ids[key] = row.id
        else:
            submitted.append(key)
    if submitted:
        sweep_id = store.create_sweep(SWEEP_NAME, {"base": {"sparsity": SPARSITY, **paper.sizes}, "runs": submitted})
        for key in submitted:
            ids[key] = executor.submit(plan[key], sweep_id=sweep_id)
            print(f"queued run {ids[key]}: {key}", flush=True)
    print(f"{len(plan) - len(submitted)} of {len(plan)} methods runs already in the gallery", flush=True)

    def report_poll(statuses) -> None:
        running = [f"{i} {s.stage or ''} {100 * (s.fraction or 0):.0f}%" for i, s in statuses.items() if s.status == "running"]
        if running:
            print("running:", ", ".join(running), flush=True)

    statuses = executor.wait(ids.values(), poll=30.0, on_poll=report_poll)
    failed = {key: statuses[i].status for key, i in ids.items() if statuses[i].status != "done"}
    if failed:
        raise SystemExit(f"not done: {failed}; see `perp runs --store {store_path}`")
    paper_ids = [row.id for row in latest_rows(store, paper).values() if row is not None and row.status == "done"]
    changed = tag(store, paper_ids, PAPER_TAG) | tag(store, list(ids.values()), METHODS_TAG) | bool(submitted) | older
    if changed:
        write_gallery(store, args.gallery)
    for key, run_id in ids.items():
        row = store.get_run(run_id)
        print(f"g{run_id:<3} {key:<22} pruned ppl {row.pruned_ppl:10.2f}")
    size = args.gallery.stat().st_size
    print(f"{args.gallery}: {'written' if changed else 'unchanged'}, {size / MIB:.2f} MiB, "
          f"{len(store.list_runs(status='done'))} finished runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
