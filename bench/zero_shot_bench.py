"""Zero-shot accuracy on the embedded model: throughput against lm-eval's stock loop, time of the default limit,
dense accuracies against public numbers, and each task's tokens per doc (issue 27).

- **Tokens per doc** (no model): every doc of each scored split, its requests as lm-eval builds them (context +
  continuation per answer choice), counted with the embedded model's tokenizer. The estimate's cost model
  (perp_engine.resources.estimate) uses these.
- **Throughput**: per round, two fresh processes score the same docs (``--limit`` per task, seed 0) of the seven
  tasks: ``perp_engine.evaluation.zero_shot.zero_shot`` on the model the pipeline loads, and lm-eval's stock
  path (its ``hf`` model built by lm-eval from the same weights folder, ``evaluator.evaluate`` on the same task
  objects). Both clocks cover the same work: reading the docs, building the tasks, scoring (model loading
  excluded). Tokens per second = tokens the model reads (``tokens_per_doc`` x docs) / seconds; the ratio is taken
  within each round; medians over ``--rounds``.
- **Accuracy**: the dense scores of the first round, beside public lm-eval 0-shot numbers of SmolLM2-135M-Instruct.

    .venv/bin/python bench/zero_shot_bench.py [--limit 40] [--rounds 3] [--threads 2] [--quick]
"""

from __future__ import annotations

import statistics
import time

import harness

# lm-eval 0-shot scores of SmolLM2-135M-Instruct (bfloat16/float32 weights from the Hub), as published on the
# model page huggingface.co/lldois/SmolLM2-135M-Reasoning-SLERP-Champion ("Baseline" column, lm-eval 0-shot):
# ARC-C acc_norm 27.73, ARC-E acc 54.12, HellaSwag acc_norm 42.99. No published number for the other four with
# the same harness and model was found.
PUBLIC = {"arc_easy": 0.5412, "arc_challenge": 0.2773, "hellaswag": 0.4299}
GOAL_RATIO = 0.9  # our tokens per second / lm-eval's stock loop's, at least
GOAL_DEFAULT_S = 180.0  # the seven tasks at the default limit, at most, on 2 CPU cores


def tokens_per_doc() -> dict[str, float]:
    """Mean tokens the model reads per doc of each task, over the whole split, embedded tokenizer: one row per
    distinct input (context + continuation, less its last token), since lm-eval runs one forward for requests whose
    inputs are equal (a yes/no or True/False question: the two one-token answers share the context's forward)."""
    from perp_engine.data.zero_shot_tasks import TASKS, load_docs
    from perp_engine.evaluation.zero_shot import build_task, quiet_harness, task_manager
    from perp_engine.model.load import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m")
    out = {}
    with quiet_harness():
        manager = task_manager(tuple(TASKS))
        for name in TASKS:
            docs = load_docs(name)
            task = build_task(name, manager, docs)["tasks"][name]
            task.build_all_requests(limit=None, rank=0, world_size=1)
            inputs = {(i.doc_id, tuple(ids[:-1])) for i, ids in zip(task.instances, tokenizer(
                [c + x for c, x in (i.arguments for i in task.instances)], add_special_tokens=False).input_ids)}
            out[name] = round(sum(len(ids) for _, ids in inputs) / len(docs), 1)
    return out


def score_ours(limit: int, threads: int) -> dict:
    """Our zero-shot stage on the embedded model: seconds, requests, tokens and scores."""
    import torch

    from perp_engine.data.zero_shot_tasks import TASKS
    from perp_engine.evaluation.zero_shot import zero_shot
    from perp_engine.model.load import load_model

    torch.set_num_threads(threads)
    model, tokenizer = load_model("smollm2-135m", device="cpu")
    report = zero_shot(model, tokenizer, tuple(TASKS), limit=limit, seed=0)
    return {"seconds": report.seconds, "requests": report.requests,
            "scores": {s.task: {"metric": s.metric, "value": s.value, "stderr": s.stderr, "docs": s.docs}
                       for s in report.scores}}


def score_stock(limit: int, threads: int) -> dict:
    """lm-eval's stock ``hf`` model (lm-eval loads the weights folder itself) on the same task objects and docs."""
    import torch
    from lm_eval import evaluator
    from lm_eval.api.registry import get_model

    from perp_engine.data.zero_shot_tasks import TASKS, doc_subset, load_docs
    from perp_engine.evaluation.zero_shot import CPU_BATCH, build_task, quiet_harness, task_manager
    from perp_engine.model.load import embedded_folder

    torch.set_num_threads(threads)
    with quiet_harness():
        lm = get_model("hf").create_from_arg_string(
            f"pretrained={embedded_folder('smollm2-135m')},dtype=float32,device=cpu,batch_size={CPU_BATCH}")
        start = time.perf_counter()  # the same work zero_shot() times: read the docs, build the tasks, score
        manager = task_manager(tuple(TASKS))
        requests = 0
        for name in TASKS:
            docs = load_docs(name)
            chosen = [docs[i] for i in doc_subset(len(docs), limit, 0)]
            out = evaluator.evaluate(lm=lm, task_dict=build_task(name, manager, chosen), log_samples=True,
                                     verbosity="ERROR")
            requests += sum(len(item["arguments"]) for item in out["samples"][name])
        seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 3), "requests": requests}


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0], rounds=3, extra=[
        ("--limit", {"type": int, "default": None, "help": "docs per task (default: the config's default limit)"})])
    from perp_engine.config import ZERO_SHOT_LIMIT
    from perp_engine.data.zero_shot_tasks import TASKS, scored_docs

    limit = args.limit or (5 if args.quick else ZERO_SHOT_LIMIT)
    facts = harness.machine_facts(args.device, args.threads)
    per_doc = harness.run_isolated(tokens_per_doc)
    tokens = sum(per_doc[task] * scored_docs(TASKS[task].docs, limit) for task in per_doc)
    rounds = []
    for r in range(args.rounds):
        ours = harness.run_isolated(score_ours, limit, args.threads)
        stock = harness.run_isolated(score_stock, limit, args.threads)
        assert ours["requests"] == stock["requests"], "the two loops must score the same requests"
        rounds.append({"ours": ours, "stock": stock, "ratio": stock["seconds"] / ours["seconds"]})
        print(f"round {r + 1}: ours {ours['seconds']:.1f} s, stock {stock['seconds']:.1f} s", flush=True)
    ratio = statistics.median(r["ratio"] for r in rounds)
    ours_s = statistics.median(r["ours"]["seconds"] for r in rounds)
    stock_s = statistics.median(r["stock"]["seconds"] for r in rounds)
    scores = rounds[0]["ours"]["scores"]
    goals = [harness.goal_line("zero-shot tokens/s vs lm-eval's stock loop", ratio, ">=", GOAL_RATIO),
             harness.goal_line(f"seven tasks at {limit} docs each", ours_s, "<=", GOAL_DEFAULT_S, unit=" s")]
    rows = [[task, s["metric"], f"{s['value']:.3f} +- {s['stderr']:.3f}", s["docs"],
             f"{PUBLIC[task]:.3f}" if task in PUBLIC else "-",
             f"{s['value'] - PUBLIC[task]:+.3f}" if task in PUBLIC else "-", per_doc[task]]
            for task, s in scores.items()]
    body = "\n".join([
        f"Seven tasks, {limit} docs each (seed 0), {rounds[0]['ours']['requests']:,} requests, about {tokens:,.0f} "
        f"scored tokens. Medians of {args.rounds} rounds, each case in a fresh process.",
        "",
        harness.markdown_table(["loop", "seconds", "tokens/s"], [
            ["perp (zero_shot stage)", f"{ours_s:.1f}", f"{tokens / ours_s:,.0f}"],
            ["lm-eval stock hf", f"{stock_s:.1f}", f"{tokens / stock_s:,.0f}"]]),
        "",
        *[g["line"] for g in goals],
        "",
        "Dense accuracy of the embedded model (a 4-bit GGUF, dequantized) against public lm-eval 0-shot numbers "
        "of SmolLM2-135M-Instruct's original weights:",
        "",
        harness.markdown_table(["task", "metric", "embedded (this run)", "docs", "public", "difference",
                                "tokens per doc"], rows),
    ])
    harness.write_results("zero_shot_bench", args, facts, {"limit": limit, "threads": args.threads},
                          {"rounds": rounds, "tokens_per_doc": per_doc, "goals": goals, "public": PUBLIC}, body)


if __name__ == "__main__":
    main()
