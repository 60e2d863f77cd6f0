"""Offloading: the blocks wait in CPU memory or in files and visit the device one at a time; results equal the
run with everything on the device (tiny models, every kind of repair), and auto picks what the memory model says fits."""

import math

import pytest
import torch
from fixtures_tiny import perp_home, save_tiny_model, tiny_preset_config, tiny_text_file  # noqa: F401  (pytest fixtures)
from tiny_models import TINY_MODELS, random_tokens

from perp_engine.evaluation.perplexity import perplexity
from perp_engine.model.blocks import find_decoder_blocks
from perp_engine.model.capture import capture_block_inputs
from perp_engine.model.load import load_skeleton
from perp_engine.model.shape import ModelShape
from perp_engine.offload.placement import BlockPlacement, each_block
from perp_engine.pruning.sequential import prune_model
from perp_engine.resources.estimate import trainable_report
from perp_engine.resources.memory_model import choose_offload, predict_memory
from perp_engine.run.pipeline import run_pipeline

CASES = [("llama", None, {"method": "sparsegpt"}), ("gpt2", "perp-masklora", {"method": "wanda", "lr": 1e-2}),
         ("opt", "recon-masklora", {"method": "wanda", "lr": 1e-2}), ("llama", "full-ft", {"method": "magnitude"}),
         ("qwen2", None, {"method": "wanda", "mode": "retrain", "train": ("norms",), "adapter": "lora"})]


def numbers(result) -> list[float]:
    values = [result.dense_ppl, result.pruned_ppl, result.final_ppl or 0.0, result.sparsity, *result.train_loss]
    values += [v for r in result.layers for v in (r.recon_error, r.drift, r.recon_error_after or 0.0, r.drift_after or 0.0)]
    return values


@pytest.mark.parametrize("family, preset, fields", CASES, ids=[f"{c[0]}-{c[1] or c[2].get('adapter', 'prune')}" for c in CASES])
def test_disk_offload_gives_the_same_run(family, preset, fields, tmp_path, tiny_text_file, perp_home):  # noqa: F811
    model_dir = save_tiny_model(tmp_path / family, family=family)
    results = {mode: run_pipeline(tiny_preset_config(model_dir, tiny_text_file, preset, steps=3, offload=mode, **fields),
                                  output_dir=str(tmp_path / mode)) for mode in ("none", "disk")}
    assert (results["none"].final_ppl is not None) == (results["none"].config["mode"] != "none")
    assert results["disk"].environment["offload"] == "disk" and results["none"].environment["offload"] == "none"
    for a, b in zip(numbers(results["none"]), numbers(results["disk"])):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    for mode in results:  # the saved models are the same files' worth
        assert (tmp_path / mode / "model.safetensors").stat().st_size > 0
    assert not any((perp_home / "scratch").iterdir())  # the run's block files are gone


def test_a_placed_model_streams_its_blocks_through_every_forward(tmp_path):
    model = TINY_MODELS["mistral"]()
    windows = random_tokens(4, 16)
    expected = perplexity(model, windows, 2)
    placement = BlockPlacement(model, "disk", torch.device("cpu"), scratch=tmp_path)
    _, blocks = find_decoder_blocks(model)
    assert all(p.is_meta for p in blocks.parameters())  # nothing of the blocks in memory between uses
    assert perplexity(model, windows, 2) == pytest.approx(expected, rel=1e-6)
    with placement.resident(1, writes=True) as block:
        assert not any(p.is_meta for p in block.parameters())
        with torch.no_grad():
            block.mlp.down_proj.weight.zero_()
    assert all(p.is_meta for p in blocks.parameters())
    placement.close()
    assert not any(p.is_meta for p in model.parameters()) and bool((blocks[1].mlp.down_proj.weight == 0).all())
    assert not any(tmp_path.iterdir())


def test_each_block_without_a_placement_gives_the_blocks_themselves():
    _, blocks = find_decoder_blocks(TINY_MODELS["llama"]())
    got = list(each_block(blocks))
    assert [i for i, _ in got] == list(range(len(blocks))) and all(block is blocks[i] for i, block in got)


def test_each_block_with_a_placement_brings_one_block_in_at_a_time(tmp_path):
    """Only the current block is on the device while the loop body runs; ``writes`` keeps its changes, without it
    they are dropped with the block; a body that raises sends its block back too."""
    model = TINY_MODELS["llama"]()
    placement = BlockPlacement(model, "disk", torch.device("cpu"), scratch=tmp_path)
    _, blocks = find_decoder_blocks(model)
    order = []
    for writes, layer in ((True, "down_proj"), (False, "up_proj")):
        for i, block in each_block(blocks, placement, writes=writes):
            assert block is blocks[i]
            assert [not any(p.is_meta for p in b.parameters()) for b in blocks] == [j == i for j in range(len(blocks))]
            with torch.no_grad():
                getattr(block.mlp, layer).weight.zero_()
            order.append(i)
        assert all(p.is_meta for p in blocks.parameters())
    assert order == list(range(len(blocks))) * 2
    with pytest.raises(RuntimeError, match="stopped in the loop"):
        for _ in each_block(blocks, placement):
            raise RuntimeError("stopped in the loop")
    assert all(p.is_meta for p in blocks.parameters())
    placement.close()
    assert all(bool((b.mlp.down_proj.weight == 0).all()) and bool((b.mlp.up_proj.weight != 0).any()) for b in blocks)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_pruning_leaves_every_block_on_disk(method, tmp_path):
    """The statistics pass stops each block early by raising inside it (from the second calibration chunk on):
    the blocks must still go back to their files, not stay in memory for the rest of the run."""
    model = TINY_MODELS["llama"]()
    placement = BlockPlacement(model, "disk", torch.device("cpu"), scratch=tmp_path)
    inputs = capture_block_inputs(model, random_tokens(6, 16), batch_size=2)
    assert len(inputs.hidden) == 3
    prune_model(model, inputs, method=method, sparsity=0.5, placement=placement)
    _, blocks = find_decoder_blocks(model)
    assert all(p.is_meta for p in blocks.parameters())
    placement.close()
    assert all(float((layer.weight == 0).float().mean()) == 0.5 for block in blocks for layer in
               (block.self_attn.q_proj, block.mlp.down_proj))


def test_a_block_whose_forward_raises_goes_back_to_disk(tmp_path):
    model = TINY_MODELS["mistral"]()
    windows = random_tokens(2, 8)
    expected = perplexity(model, windows, 2)
    placement = BlockPlacement(model, "disk", torch.device("cpu"), scratch=tmp_path)
    _, blocks = find_decoder_blocks(model)

    def stop(*_):
        raise RuntimeError("stopped inside the block")

    stops = (lambda: blocks[1].mlp.up_proj.register_forward_pre_hook(stop),  # after the placement brought block 1 in
             lambda: blocks[0].register_forward_pre_hook(stop, prepend=True))  # before it would bring block 0 in
    for register in stops:
        handle = register()
        with pytest.raises(RuntimeError, match="stopped inside the block"), torch.no_grad():
            model(input_ids=windows)
        handle.remove()
        assert all(p.is_meta for p in blocks.parameters())
    assert perplexity(model, windows, 2) == pytest.approx(expected, rel=1e-6)  # entering and leaving still pair up
    assert all(p.is_meta for p in blocks.parameters())
    placement.close()


def test_auto_offload_picks_the_first_mode_that_fits(tiny_text_file):  # noqa: F811
    from perp_engine.config import RunConfig

    config = RunConfig.create("none", model="smollm2-135m", device="cpu")
    skeleton = load_skeleton(config.model)
    shape, report = ModelShape.of(skeleton), trainable_report(skeleton, config)
    need = {m: predict_memory(config, shape, report, "cuda", m) for m in ("none", "cpu", "disk")}
    assert need["none"].stage("prune").device_bytes > need["cpu"].stage("prune").device_bytes
    assert need["cpu"].peak_host > need["disk"].peak_host
    assert choose_offload(config, shape, report, "cuda", (1e12, 1e12))[0] == "none"
    room = need["cpu"].peak_device / 0.9 + 1  # the blocks one at a time fit, the whole model does not
    assert need["none"].peak_device > 0.9 * room
    assert choose_offload(config, shape, report, "cuda", (room, 1e12))[0] == "cpu"
    assert choose_offload(config, shape, report, "cuda", (room, need["disk"].peak_host / 0.9 + 1))[0] == "disk"
