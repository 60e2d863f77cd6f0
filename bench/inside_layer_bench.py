"""What the Inside a layer page waits for: capturing a mid-depth block's inputs, then each analysis of one linear.

In a fresh process on the embedded model: load, draw the calibration and held-out windows (not timed), then
``capture_block`` of block 15 (once per block on the page), and for its q_proj (576 x 576) and down_proj
(576 x 1536): ``inspect_layer`` at 50% (a layer's first view), at 60%, 70% and 2:4 (slider moves),
``error_curves`` (0-90%, once per layer) and ``adapter_zeros`` (LoRA and MaskLoRA, 30 steps, rank 8).

    .venv/bin/python bench/inside_layer_bench.py [--device cpu|cuda] [--threads 2] [--quick]
"""

from __future__ import annotations

import harness

BLOCK = 15
LINEARS = ("self_attn.q_proj", "mlp.down_proj")
MOVES = ((0.6, "unstructured"), (0.7, "unstructured"), (0.5, "2:4"))
GOAL_SECONDS = 3.0  # issue 14: the analysis of one q_proj, once its block's inputs are captured


def case(sizes: dict, device: str, threads: int) -> dict:
    from perp_engine.inspect_layer import adapter_zeros, capture_block, error_curves, inspect_layer, layer_windows
    from perp_engine.model.load import load_model

    dev = harness.setup_torch(device, threads)
    model, tokenizer = load_model("smollm2-135m", device=str(dev))
    calib, heldout = layer_windows(tokenizer, "wiki-embedded", sizes["windows"], sizes["seqlen"])
    meter = harness.PeakMemory(dev)
    meter.start()
    layers, capture_s = harness.timed(dev, lambda: capture_block(model, BLOCK, calib, heldout))
    result = {"capture_seconds": capture_s, "capture_peak_mb": meter.stop(), "start_mb": meter.start_mb,
              "memory_method": meter.method, "linears": {}}
    for name in LINEARS:
        layer = layers[name]
        first, first_s = harness.timed(dev, lambda: inspect_layer(layer, 0.5))
        moves = [harness.timed(dev, lambda s=s, p=p: inspect_layer(layer, s, p))[1] for s, p in MOVES]
        _, curves_s = harness.timed(dev, lambda: error_curves(layer))
        _, adapters_s = harness.timed(dev, lambda: adapter_zeros(layer, first.weights["wanda"], steps=sizes["steps"]))
        result["linears"][name] = {"shape": list(layer.weight.shape), "inspect_seconds": first_s,
                                   "move_seconds": moves, "curves_seconds": curves_s, "adapters_seconds": adapters_s,
                                   "local_error": first.local_error}
    return result


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0])
    sizes = ({"windows": 4, "seqlen": 32, "steps": 3} if args.quick else {"windows": 16, "seqlen": 128, "steps": 30})
    result = harness.run_isolated(case, sizes, args.device, args.threads)
    rows, goals = [], []
    for name, r in result["linears"].items():
        rows.append([name, "x".join(map(str, r["shape"])), f"{r['inspect_seconds']:.2f}", f"{max(r['move_seconds']):.2f}",
                     f"{r['curves_seconds']:.2f}", f"{r['adapters_seconds']:.2f}",
                     ", ".join(f"{m} {e:.4f}" for m, e in r["local_error"].items())])
        if name.endswith("q_proj"):
            goals.append(harness.goal_line(f"{name}: inspect_layer + error_curves", r["inspect_seconds"] + r["curves_seconds"],
                                           "<=", GOAL_SECONDS, " s"))
            goals.append(harness.goal_line(f"{name}: a slider move (slowest inspect_layer)", max(r["move_seconds"]),
                                           "<=", GOAL_SECONDS, " s"))
    table = harness.markdown_table(["linear", "shape", "inspect 50% (s)", "slider move, slowest (s)",
                                    "error curves (s)", "adapters (s)", "local error at 50%"], rows)
    body = "\n".join([
        f"Block {BLOCK} of smollm2-135m, {sizes['windows']} calibration + {sizes['windows']} held-out windows of "
        f"{sizes['seqlen']} tokens. capture_block (once per block): {result['capture_seconds']:.2f} s, peak "
        f"{result['capture_peak_mb']:.0f} MiB ({result['memory_method']}). Slider moves: "
        + ", ".join(f"{s:.0%} {p}" for s, p in MOVES) + f"; adapters: {sizes['steps']} steps each of LoRA and MaskLoRA.",
        "", table, "", "Goals:", *[g["line"] for g in goals]])
    harness.write_results("inside_layer_bench", args, harness.machine_facts(args.device, args.threads), sizes,
                          {**result, "goals": goals}, body)


if __name__ == "__main__":
    main()
