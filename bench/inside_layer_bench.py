"""What a user of the Inside a layer page waits for: its first load, a block change, a sparsity or pattern move.

The page itself runs (Streamlit's AppTest: the script as the server runs it, without a browser's drawing), on the
embedded model with the page's defaults (block 15 of 30, q_proj, 50%, 16 calibration + 16 held-out windows of
128 tokens), in a fresh process that has imported what the app imports when it starts (app.widgets and the
engine) and with the model's and the text's files in the disk caches (an earlier process loaded them):

- first load: open the page and wait for its last element (model load, windows, capture of block 15, each
  method's pruning, the error curves, every chart; the adapters wait for their button);
- slider moves: sparsity 60%, 70%, then pattern 2:4;
- one press of "Train the adapters" and a change of linear (q_proj to down_proj), reported without a goal;
- block changes: to 16 (next), 14 (previous), 29 (last) and 0 (first).

Then, in the same process, what the page's steps cost in the engine: ``capture_block`` of block 15 on its own, a
``DenseWalk`` capturing block 16 after block 15, and per linear ``inspect_layer``, ``error_curves`` and
``adapter_zeros`` (LoRA and MaskLoRA).

    .venv/bin/python bench/inside_layer_bench.py [--device cpu|cuda] [--threads 2] [--quick]
"""

from __future__ import annotations

import harness

MODEL, TEXT = "smollm2-135m", "wiki-embedded"
BLOCK = 15  # the page's default for the embedded model: the middle of its 30 blocks
MOVES = (("inside_sparsity", 0.6), ("inside_sparsity", 0.7), ("inside_pattern", "2:4"))
BLOCK_CHANGES = (16, 14, 29, 0)
LINEARS = ("self_attn.q_proj", "mlp.down_proj")
GOALS = {"first load": 15.0, "block change": 10.0, "slider move": 1.5}  # seconds on 2 CPU cores (issue 30)


def warm(sizes: dict) -> None:
    """Load the model and draw the windows once, so the measured process finds every file in the disk caches."""
    from perp_engine.inspect_layer import layer_windows
    from perp_engine.model.load import load_model

    _, tokenizer = load_model(MODEL, device="cpu")
    layer_windows(tokenizer, TEXT, sizes["windows"], sizes["seqlen"])


def case(sizes: dict, device: str, threads: int) -> dict:
    import os
    import tempfile
    import time

    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the page runs on device "auto"
    dev = harness.setup_torch(device, threads)
    os.environ["PERP_STORE"] = os.path.join(tempfile.mkdtemp(), "runs.sqlite")
    from streamlit.testing.v1 import AppTest

    import app.widgets  # noqa: F401  (what the server imports when it starts: the engine, Streamlit)

    page = AppTest.from_file(str(harness.REPO / "app" / "main.py"), default_timeout=3600)
    for key, value in {"exp_model": MODEL, "exp_dataset": TEXT, "inside_windows": sizes["windows"],
                       "inside_seqlen": sizes["seqlen"], "inside_adapter_steps": sizes["steps"]}.items():
        page.session_state[key] = value
    page.switch_page("../pages/inside_layer.py")

    def step(change) -> float:
        start = time.perf_counter()
        change().run()
        seconds = time.perf_counter() - start
        if page.exception:
            raise RuntimeError([e.value for e in page.exception])
        return seconds

    result = {"first load": step(lambda: page), "slider moves": {}, "block changes": {}}
    for key, value in MOVES:
        widget = page.slider(key=key) if key == "inside_sparsity" else page.button_group(key=key)
        result["slider moves"][f"{key.removeprefix('inside_')} {value}"] = step(lambda: widget.set_value(value))
    result["train the adapters"] = step(lambda: next(b for b in page.button if b.label == "Train the adapters").click())
    page.button_group(key="inside_pattern").set_value("unstructured").run()
    result["linear change to mlp.down_proj"] = step(
        lambda: page.selectbox(key="inside_linear").set_value("mlp.down_proj"))
    for block in BLOCK_CHANGES:
        result["block changes"][f"to {block}"] = step(lambda: page.slider(key="inside_block").set_value(block))
    result["device"] = next(c.value for c in page.caption if str(c.value).startswith("Model **")).split(" · ")[-1]
    result["engine"] = engine_steps(sizes, dev)
    return result


def engine_steps(sizes: dict, dev) -> dict:
    """The engine calls under the page, each timed on its own (a fresh model, nothing cached)."""
    from perp_engine.inspect_layer import (
        DenseWalk,
        adapter_zeros,
        capture_block,
        error_curves,
        inspect_layer,
        layer_windows,
    )
    from perp_engine.model.load import load_model

    model, tokenizer = load_model(MODEL, device=str(dev))
    calib, heldout = layer_windows(tokenizer, TEXT, sizes["windows"], sizes["seqlen"])
    layers, capture_s = harness.timed(dev, lambda: capture_block(model, BLOCK, calib, heldout))
    walk = DenseWalk(model, calib, heldout)
    walk.capture(BLOCK)
    _, next_s = harness.timed(dev, lambda: walk.capture(BLOCK + 1))
    out = {"capture_block": capture_s, "walk: next block": next_s, "walk stride": walk.stride, "linears": {}}
    for name in LINEARS:
        layer = layers[name]
        first, inspect_s = harness.timed(dev, lambda: inspect_layer(layer, 0.5))
        _, curves_s = harness.timed(dev, lambda: error_curves(layer))
        _, adapters_s = harness.timed(dev, lambda: adapter_zeros(layer, first.weights["wanda"], steps=sizes["steps"]))
        out["linears"][name] = {"shape": list(layer.weight.shape), "inspect_layer": inspect_s,
                                "error_curves": curves_s, "adapter_zeros": adapters_s}
    return out


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0])
    sizes = {"windows": 4, "seqlen": 32, "steps": 3} if args.quick else {"windows": 16, "seqlen": 128, "steps": 30}
    facts = harness.machine_facts(args.device, args.threads)
    harness.run_isolated(warm, sizes)
    result = harness.run_isolated(case, sizes, args.device, args.threads)
    slowest_move = max(result["slider moves"].values())
    slowest_block = max(result["block changes"].values())
    goals = [harness.goal_line("first load (open the page, every element drawn)", result["first load"], "<=",
                               GOALS["first load"], " s"),
             harness.goal_line("block change (slowest of " + ", ".join(result["block changes"]) + ")",
                               slowest_block, "<=", GOALS["block change"], " s"),
             harness.goal_line("sparsity or pattern move (slowest of " + ", ".join(result["slider moves"]) + ")",
                               slowest_move, "<=", GOALS["slider move"], " s")]
    rows = [["first load", f"{result['first load']:.2f}"]]
    rows += [[f"move: {name}", f"{s:.2f}"] for name, s in result["slider moves"].items()]
    rows += [["press Train the adapters", f"{result['train the adapters']:.2f}"],
             ["linear change to mlp.down_proj", f"{result['linear change to mlp.down_proj']:.2f}"]]
    rows += [[f"block change {name}", f"{s:.2f}"] for name, s in result["block changes"].items()]
    engine = result["engine"]
    engine_rows = [[name, "x".join(map(str, r["shape"])), f"{r['inspect_layer']:.2f}", f"{r['error_curves']:.2f}",
                    f"{r['adapter_zeros']:.2f}"] for name, r in engine["linears"].items()]
    body = "\n".join([
        f"The page on {MODEL} ({result['device']}), block {BLOCK}, {sizes['windows']} calibration + "
        f"{sizes['windows']} held-out windows of {sizes['seqlen']} tokens, adapters {sizes['steps']} steps. "
        "Seconds from a widget change to the page's last element, in one process, in this order:", "",
        harness.markdown_table(["what the user does", "seconds"], rows), "",
        f"Underneath, in the engine: capture_block of block {BLOCK} on its own {engine['capture_block']:.2f} s; "
        f"a DenseWalk capturing block {BLOCK + 1} after block {BLOCK} {engine['walk: next block']:.2f} s (it keeps "
        f"every {engine['walk stride']} block(s)' inputs).", "",
        harness.markdown_table(["linear", "shape", "inspect_layer 50% (s)", "error_curves (s)", "adapter_zeros (s)"],
                               engine_rows), "",
        "Goals (issue 30, 2 CPU cores):", *[g["line"] for g in goals]])
    harness.write_results("inside_layer_bench", args, facts, sizes, {**result, "goals": goals}, body)


if __name__ == "__main__":
    main()
