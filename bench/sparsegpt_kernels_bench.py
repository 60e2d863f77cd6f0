"""SparseGPT's kernels against what they replaced, at the embedded model's widths (issue 31).

Three parts of the SparseGPT stage are measured in one process on random inputs of the embedded model's shapes
(576-wide inputs for q/k/v, o and gate/up, 1536-wide for down; calibration in 8 chunks of 1024 tokens), each
against the computation it replaced or the official code's, interleaved, median of ``--rounds`` (5 by default):

- the Hessian's update (``LayerStats``' lower triangle by halves) against one full product x^T x per chunk and
  against the 192-wide lower tiles it replaced;
- the factor (``upper_cholesky_of_inverse``) against the official chain (Cholesky, inverse, Cholesky), and its
  Cholesky part (``reverse_cholesky``, by halves) against LAPACK's factorisation of the whole matrix;
- the N:M step's choice of a group (``group_pruned``, float bits compared as integers) against comparing the floats
  with the tie rule it replaced;
- the k-th lowest score of every row (``row_thresholds``: numpy's partition on CPU) against torch's top-k (Wanda's
  rows) and ``torch.kthvalue`` (one long row: a block of SparseGPT's unstructured scores);
- ``prune_sparsegpt`` over one block's seven linears with its column loop in numpy (CPU) against the same loop in
  torch, unstructured and 2:4.

Nothing here has a goal: prune_bench times the whole stage. This file backs the per-kernel numbers the code and the
README quote.

    .venv/bin/python bench/sparsegpt_kernels_bench.py [--threads 2] [--rounds 5] [--quick]
"""

from __future__ import annotations

import statistics
import time

import harness

WIDTHS = (576, 1536)  # the embedded model's distinct input widths
BLOCK_LINEARS = ((576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536))  # (out, in)


def _mean_ms(fn, repeats: int) -> float:
    """The mean wall time of ``repeats`` calls, in milliseconds (one call first, unmeasured)."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def _float_rule_group(scores, n, _ties, out):
    """The N:M group choice before the float bits were compared as integers: every pair compared as floats, ties to
    the earlier member."""
    import torch

    m = scores.shape[0]
    earlier = torch.ones(m, m, dtype=torch.bool, device=scores.device).tril_(-1).unsqueeze(2)
    mine, other = scores.unsqueeze(1), scores.unsqueeze(0)
    return torch.lt(torch.where(earlier, other <= mine, other < mine).sum(dim=1), n, out=out)


def _topk_rows(score, k: int):
    """Every row's k-th lowest as torch selects it: the largest of the k lowest from an unsorted top-k (the engine's
    way on CPU before numpy's partition, and still on other devices)."""
    return score.topk(k, dim=1, largest=False, sorted=False).values.amax(dim=1, keepdim=True)


def _tiles(H, x, beta: float, alpha: float, tile: int = 192) -> None:
    """The Hessian update before the halves: the lower 192-wide tiles of x^T x, one product each."""
    for i in range(0, H.shape[0], tile):
        for j in range(0, i + 1, tile):
            H[i:i + tile, j:j + tile].addmm_(x[:, i:i + tile].T, x[:, j:j + tile], beta=beta, alpha=alpha)


def _official_chain(H, percdamp: float):
    """The official SparseGPT code's factor: damp, Cholesky, inverse from the factor, upper Cholesky of the inverse."""
    import torch

    damped = H.clone()
    damped.diagonal().add_(percdamp * torch.diag(H).mean())
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(damped)), upper=True)


def measure(rounds: int, tokens: int, chunks: int) -> list[dict]:
    import torch

    from perp_engine.pruning import patterns, sparsegpt
    from perp_engine.pruning.patterns import group_ties
    from perp_engine.pruning.stats import _add_lower_halves

    g = torch.Generator().manual_seed(0)
    rows: list[dict] = []

    def pair(part: str, width: int, ours, before, label_ours: str, label_before: str, repeats: int) -> None:
        times = {label_ours: [], label_before: []}
        for _ in range(rounds):  # interleaved: the host's drift hits both alike
            times[label_ours].append(_mean_ms(ours, repeats))
            times[label_before].append(_mean_ms(before, repeats))
        ours_ms, before_ms = (statistics.median(times[k]) for k in (label_ours, label_before))
        rows.append({"part": part, "width": width, "ours": label_ours, "ours_ms": ours_ms, "before": label_before,
                     "before_ms": before_ms, "speedup": before_ms / ours_ms})

    factors = {}
    for width in WIDTHS:
        xs = [torch.randn(tokens, width, generator=g) for _ in range(chunks)]
        H = torch.zeros(width, width)
        pair("Hessian update, all chunks", width, lambda: [_add_lower_halves(H, x, 0.5, 0.1) for x in xs],
             lambda: [H.addmm_(x.T, x, beta=0.5, alpha=0.1) for x in xs], "lower halves", "one full product", 3)
        pair("Hessian update, all chunks", width, lambda: [_add_lower_halves(H, x, 0.5, 0.1) for x in xs],
             lambda: [_tiles(H, x, 0.5, 0.1) for x in xs], "lower halves", "lower 192-wide tiles", 3)
        hessian = torch.cat(xs).T @ torch.cat(xs) * (2.0 / (tokens * chunks))
        pair("factor U of (H + damp I)^-1", width, lambda: sparsegpt.upper_cholesky_of_inverse(hessian, 0.01, print),
             lambda: _official_chain(hessian, 0.01), "reverse_cholesky + triangular inverse", "official chain", 5)
        shift = 0.01 * float(torch.diag(hessian).mean())
        damped = hessian + shift * torch.eye(width)
        pair("Cholesky factorisation", width, lambda: sparsegpt.reverse_cholesky(hessian, shift),
             lambda: torch.linalg.cholesky_ex(damped), "reverse_cholesky (by halves)", "LAPACK, whole matrix", 5)
        factors[width] = sparsegpt.inverse_factor(hessian, 0.01, torch.device("cpu"))
    ties = group_ties(4, torch.empty(0))
    for width in (576, 1536, 3072):
        scores, out = torch.rand(4, width, generator=g), torch.empty(4, width)
        pair("N:M group choice (2 of 4)", width, lambda: sparsegpt.group_pruned(scores, 2, ties, out),
             lambda: _float_rule_group(scores, 2, ties, out), "float bits as integers", "float comparisons", 200)
    for out_features, in_features in sorted(set(BLOCK_LINEARS)):
        score = torch.rand(out_features, in_features, generator=g)
        k = in_features // 2
        pair("k-th lowest of every row (Wanda)", in_features, lambda: patterns.row_thresholds(score, k),
             lambda: _topk_rows(score, k), f"numpy partition, {out_features} rows", "torch top-k", 20)
    for rows_ in (192, 576, 1536):
        block_scores = torch.rand(1, 128 * rows_, generator=g)
        k = block_scores.numel() // 2
        pair("k-th lowest of one long row (a SparseGPT block)", rows_ * 128,
             lambda: patterns.row_thresholds(block_scores, k), lambda: block_scores[0].kthvalue(k),
             "numpy partition", "torch.kthvalue", 20)
    weights = [(torch.randn(out, inp, generator=g), factors[inp]) for out, inp in BLOCK_LINEARS]
    numpy_loop = sparsegpt._namespace

    def block_in(namespace, nm):
        def run():
            sparsegpt._namespace = namespace
            try:
                for w, factor in weights:
                    sparsegpt.prune_sparsegpt(w, factor, 0.5, nm)
            finally:
                sparsegpt._namespace = numpy_loop
        return run

    for nm, label in ((None, "unstructured"), ((2, 4), "2:4")):
        pair(f"prune_sparsegpt {label}, one block's 7 linears", 576, block_in(numpy_loop, nm),
             block_in(lambda _device: torch, nm), "column loop in numpy", "column loop in torch", 1)
    return rows


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0], rounds=5)
    sizes = {"tokens_per_chunk": 128 if args.quick else 1024, "chunks": 2 if args.quick else 8,
             "rounds": 1 if args.quick else args.rounds}
    facts = harness.machine_facts(args.device, args.threads)
    harness.setup_torch(args.device, args.threads)
    rows = measure(sizes["rounds"], sizes["tokens_per_chunk"], sizes["chunks"])
    table = harness.markdown_table(
        ["part", "width", "ours", "ms", "before / official", "ms", "speedup"],
        [[r["part"], r["width"], r["ours"], f"{r['ours_ms']:.2f}", r["before"], f"{r['before_ms']:.2f}",
          f"{r['speedup']:.2f}x"] for r in rows])
    body = ("Random inputs of the embedded model's widths; each pair interleaved, median of the rounds (each round the "
            "mean of several calls). Speedup = the replaced or official computation's time / ours.\n\n" + table)
    harness.write_results("sparsegpt_kernels_bench", args, facts, sizes, {"rows": rows}, body)


if __name__ == "__main__":
    main()
