"""The memory model's predictions move the way the runs do (table-driven over tiny models of several families),
the training state it counts is what the training loop holds at its optimizer step (mixed precision included),
``perp estimate`` sizes a model from its config alone (an 8B LLaMA with no weights), a run refuses such a
folder with one line, and the Experiment page's fit sentences say what the plan says."""

import json
from dataclasses import replace

import pytest
import torch
from fixtures_tiny import save_tiny_model  # noqa: F401
from torch.optim.optimizer import register_optimizer_step_post_hook
from transformers import LlamaConfig

from app import memory_view
from perp_engine.cli import main
from perp_engine.config import RunConfig
from perp_engine.errors import PerpError
from perp_engine.model.load import check_weights, load_model
from perp_engine.repair.retrain import retrain
from perp_engine.repair.subsets import select_trainable
from perp_engine.repair.training_loop import training_mode
from perp_engine.resources import memory_model
from perp_engine.resources.memory_meter import MIB
from perp_engine.resources.memory_model import (
    FIT_MARGIN,
    MemoryPlan,
    gpu_fits,
    model_facts,
    plan_memory,
    predict_memory,
    recipe_config,
)

GIB = 2**30
FAMILIES = ("llama", "gpt2", "opt", "qwen2", "mistral")


def llama_8b(folder) -> str:
    """A Llama-3-8B-shaped config alone (no weights, no tokenizer), as a user has before downloading."""
    LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192,
                tie_word_embeddings=False).save_pretrained(folder)
    return str(folder)


def predicted(config: RunConfig, device: str = "cuda", offload: str = "none"):
    shape, report = model_facts(config)
    return predict_memory(config, shape, report, device, offload)


@pytest.mark.parametrize("family", FAMILIES)
def test_predictions_move_with_what_the_run_holds(family, tmp_path):
    model = str(save_tiny_model(tmp_path / family, family=family))
    base = {"model": model, "seqlen": 32, "batch_size": 2}
    prune = RunConfig.create("none", method="sparsegpt", **base)
    assert predicted(prune, offload="cpu").stage("prune").device_bytes < predicted(prune).stage("prune").device_bytes
    assert predicted(prune, offload="cpu").peak_host > predicted(prune, offload="disk").peak_host
    half = RunConfig.create("none", method="sparsegpt", dtype="bfloat16", **base)
    assert predicted(half).stage("dense_eval").device_bytes < predicted(prune).stage("dense_eval").device_bytes
    perp = predicted(RunConfig.create("perp", **base)).stage("train").device_bytes
    full = predicted(RunConfig.create("full-ft", **base)).stage("train").device_bytes
    assert full > perp  # gradients and AdamW state of every weight
    longer = {**base, "seqlen": 128, "batch_size": 8}
    plain = predicted(RunConfig.create("perp", grad_checkpointing=False, **longer)).stage("train").device_bytes
    checkpointed = predicted(RunConfig.create("perp", grad_checkpointing=True, **longer)).stage("train").device_bytes
    assert checkpointed < plain
    assert [s.stage for s in predicted(RunConfig.create("perp", **base)).stages][-2:] == ["train", "final_eval"]


def test_mib_has_one_home():
    """The meter's MIB (2**20 bytes) is the one the memory model writes its constants in, not a copy of it."""
    assert MIB == 2**20
    assert memory_model.MIB is MIB
    assert (memory_model.CPU_BASELINE, memory_model.DATA_TRANSIENT) == (420 * 2**20, 80 * 2**20)


def test_recipe_config_keeps_the_model_and_sizes_and_swaps_the_repair(tmp_path):
    config = RunConfig.create("none", model="smollm2-135m", dtype="bfloat16", seqlen=512, method="wanda")
    full = recipe_config(config, "full-ft")
    assert (full.model, full.dtype, full.seqlen, full.method) == ("smollm2-135m", "bfloat16", 512, "wanda")
    assert full.mode == "retrain" and full.preset == "full-ft"
    assert recipe_config(full, "none").mode == "none"


def test_an_8b_llama_config_is_sized_for_24_and_80_gb_gpus(tmp_path):
    config = RunConfig.create("perp", model=llama_8b(tmp_path / "llama-8b"), dtype="bfloat16")
    fits = gpu_fits(config)
    assert set(fits) == {"prune", "perp", "full-ft"} and all(set(f) == {"24 GB", "80 GB"} for f in fits.values())
    assert fits["prune"]["24 GB"].fits  # 16 GB of bf16 weights, blocks one at a time if needed
    assert not fits["full-ft"]["24 GB"].fits  # weights + gradients + AdamW state: 4x the weights at least
    assert fits["full-ft"]["24 GB"].need > 4 * 16e9
    assert fits["perp"]["80 GB"].fits
    for by_gpu in fits.values():
        for gpu, fit in by_gpu.items():
            assert (fit.need <= FIT_MARGIN * int(gpu.split()[0]) * GIB) == fit.fits
    fp32 = gpu_fits(recipe_config(config, "none").replace(dtype="float32"))["prune"]["24 GB"]
    assert fp32.fits and fp32.offload in ("cpu", "disk")  # 32 GB of weights: only with the blocks offloaded


def test_perp_estimate_prints_the_8b_fit_table_without_weights(tmp_path, capsys):
    folder = llama_8b(tmp_path / "llama-8b")
    assert main(["estimate", "--model", folder, "--preset", "perp", "--dtype", "bfloat16", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_params"] > 8e9
    assert set(data["gpus"]) == {"prune", "perp", "full-ft"}
    assert data["gpus"]["full-ft"]["24 GB"]["fits"] is False and data["gpus"]["prune"]["80 GB"]["fits"] is True
    stages = data["memory"]["offload"]["none"]["stages"]
    assert {"load", "prune", "train", "final_eval"} <= set(stages)
    assert data["memory"]["auto"] in ("none", "cpu", "disk")
    assert main(["estimate", "--model", folder, "--preset", "perp", "--dtype", "bfloat16"]) == 0
    text = capsys.readouterr().out
    assert "24 GB" in text and "80 GB" in text and "full-ft" in text and "--offload auto picks" in text


def test_full_retraining_of_an_8b_llama_in_bfloat16_needs_16_bytes_a_weight_and_does_not_fit_80_gb(tmp_path, capsys):
    """The weight, its float32 master copy, float32 gradient and two float32 AdamW moments: 18 bytes per weight
    (22 on a GPU, with AdamW's foreach step), not the 8 of counting the state in bfloat16."""
    folder = llama_8b(tmp_path / "llama-8b")
    assert main(["estimate", "--model", folder, "--preset", "full-ft", "--dtype", "bfloat16", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    train_gib = data["memory"]["offload"]["none"]["stages"]["train"]["device_gib"]
    assert train_gib * GIB >= 16 * data["total_params"]
    assert data["gpus"]["full-ft"]["80 GB"]["fits"] is False
    assert data["gpus"]["full-ft"]["80 GB"]["need_gib"] * GIB >= 20 * data["total_params"]
    assert data["gpus"]["perp"]["80 GB"]["fits"] is True  # the state of 0.1% of the weights
    assert main(["estimate", "--model", folder, "--preset", "full-ft", "--dtype", "bfloat16"]) == 0
    full_ft_row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("full-ft"))
    assert full_ft_row.count("no (needs") == 2


@pytest.mark.parametrize("dtype, master, per_weight, on_gpu", [("bfloat16", True, 16, 20), ("float16", True, 16, 20),
                                                               ("bfloat16", False, 6, 8), ("float32", True, 12, 16)])
def test_training_state_per_weight_follows_master_copies(dtype, master, per_weight, on_gpu, tmp_path):
    """Full retraining's state besides the weights, per weight, on a CPU: float32 master, gradient and two moments
    for a half-precision model; without master copies the gradient and moments in the weights' dtype; in
    float32 no copy. On a GPU AdamW's foreach step adds the square root of every second moment."""
    config = RunConfig.create("full-ft", model=str(save_tiny_model(tmp_path / "tiny")), dtype=dtype,
                              master_weights=master)
    shape, report = model_facts(config)
    train = predict_memory(config, shape, report, "cpu", "none").stage("train")
    assert train.parts["trained"] == per_weight * report.trainable
    assert predict_memory(config, shape, report, "cuda", "none").stage("train").parts["trained"] == (
        on_gpu * report.trainable)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_training_state_is_what_the_loop_holds_at_its_optimizer_step(dtype, tmp_path):
    """Measured on a real step of a tiny model's full retraining: the bytes of what AdamW updates (the float32
    master copies, or the weights themselves), their gradients, its moments, and any gradient still on a model
    weight, right after the step, equal the model's ``trained`` part."""
    folder = str(save_tiny_model(tmp_path / "tiny"))
    config = RunConfig.create("full-ft", model=folder, dtype=dtype, device="cpu")
    shape, report = model_facts(config)
    predicted_state = predict_memory(config, shape, report, "cpu", "none").stage("train").parts["trained"]

    model, _ = load_model(folder, device="cpu", dtype=dtype)
    select_trainable(model, config.train)
    weights = {p.data_ptr() for p in model.parameters()}
    held: list[int] = []

    def at_step(optimizer, args, kwargs):
        tensors = {}
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.data_ptr() not in weights:
                    tensors[p.data_ptr()] = p
                if p.grad is not None:
                    tensors[p.grad.data_ptr()] = p.grad
                tensors.update({t.data_ptr(): t for t in optimizer.state[p].values() if t.numel() == p.numel()})
        tensors.update({p.grad.data_ptr(): p.grad for p in model.parameters() if p.grad is not None})
        held.append(sum(t.numel() * t.element_size() for t in tensors.values()))

    handle = register_optimizer_step_post_hook(at_step)
    try:
        retrain(model, torch.randint(0, shape.vocab, (4, 16)), steps=2, lr=1e-4, batch_size=2)
    finally:
        handle.remove()
    assert len(held) == 2 and held[0] == held[1] == predicted_state


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_attention_matrices_kept_in_training_on_a_cpu_are_counted(family, tmp_path):
    """GPT-2's attention drops its probabilities out in training: on a CPU SDPA's math path then keeps three float32
    batch x heads x seqlen x seqlen matrices per block (what autograd saves, counted here); LLaMA's keeps none."""
    folder = str(save_tiny_model(tmp_path / family, family=family))
    config = RunConfig.create("perp", model=folder, seqlen=48, batch_size=2, device="cpu")  # 48: not a width
    shape, report = model_facts(config)
    model, _ = load_model(folder, device="cpu")
    saved: dict[int, torch.Tensor] = {}

    def keep(t):
        if t.dim() >= 2 and t.shape[-2:] == (config.seqlen, config.seqlen):
            saved[t.untyped_storage().data_ptr()] = t
        return t

    with training_mode(model), torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model.get_input_embeddings().weight.requires_grad_(True)
        model(torch.randint(0, shape.vocab, (config.batch_size, config.seqlen)))
    matrices = sum(t.numel() * t.element_size() for t in saved.values())
    per_matrix = config.batch_size * shape.heads * config.seqlen ** 2 * 4
    assert matrices == (memory_model.ATTENTION_MATRICES * per_matrix * shape.n_blocks if family == "gpt2" else 0)
    on_cpu = predict_memory(config, shape, report, "cpu", "none").stage("train").device_bytes
    without = predict_memory(config, replace(shape, attention_dropout=0.0), report, "cpu", "none")
    assert on_cpu - without.stage("train").device_bytes >= matrices


def test_a_run_on_a_folder_without_weights_is_one_line_exit_2(tmp_path, capsys):
    folder = llama_8b(tmp_path / "llama-8b")
    with pytest.raises(PerpError, match="holds no weights"):
        check_weights(folder)
    assert main(["run", "--no-store", "--model", folder, "--preset", "perp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model" in err[0] and "holds no weights" in err[0]
    check_weights(str(save_tiny_model(tmp_path / "tiny")))  # a folder with weights passes


def _plan(none_gib: float, disk_gib: float, room_gib: float) -> MemoryPlan:
    config = RunConfig.create("none", model="smollm2-135m", device="cpu")
    plan = plan_memory(config, device="cpu")
    scale = {"none": none_gib, "cpu": none_gib, "disk": disk_gib}
    modes = {m: type(e)(device="cpu", offload=m, stages=tuple(type(s)(s.stage, scale[m] * GIB * s.device_bytes
                                                                        / e.peak_device, 0.0) for s in e.stages))
             for m, e in plan.modes.items()}
    auto = next((m for m in ("none", "disk") if modes[m].peak_device <= FIT_MARGIN * room_gib * GIB), "disk")
    return MemoryPlan(device="cpu", room=(room_gib * GIB, room_gib * GIB), modes=modes, auto=auto)


def test_the_fit_sentences_say_what_the_plan_says():
    roomy = _plan(none_gib=2.0, disk_gib=1.0, room_gib=20.0)
    assert memory_view.fit_summary(roomy, "auto").startswith("**Fits**") and "without offloading" in memory_view.fit_summary(roomy, "auto")
    tight = _plan(none_gib=10.0, disk_gib=3.0, room_gib=8.0)
    assert tight.auto == "disk"
    assert "with offload disk" in memory_view.fit_summary(tight, "auto")
    refused = memory_view.fit_summary(tight, "none")
    assert refused.startswith("**Does not fit**") and "Offload disk would fit" in refused
    hopeless = memory_view.fit_summary(_plan(none_gib=10.0, disk_gib=9.0, room_gib=8.0), "auto")
    assert "No offload mode fits" in hopeless
    line = memory_view.mode_line(tight)
    assert "none 10.00 GiB (too big)" in line and "disk 3.00 GiB (fits)" in line and "auto picks disk" in line


@pytest.mark.parametrize("preset", ["none", "perp"])
def test_each_zero_shot_stage_is_predicted_with_its_batch_of_logits(preset, tmp_path):
    """One stage per scored model, in the pipeline's order; its logits (and their log-softmax) over a batch of the
    longest requests of the tasks asked for, so HellaSwag's long endings cost more than WinoGrande's sentences."""
    from perp_engine.data.zero_shot_tasks import TASKS
    from perp_engine.evaluation.zero_shot import CPU_BATCH
    from perp_engine.run.pipeline import stages_for

    model = str(save_tiny_model(tmp_path / "llama"))
    config = RunConfig.create(preset, model=model, seqlen=32, batch_size=2, zero_shot="winogrande")
    plan = predicted(config, device="cpu")
    assert [s.stage for s in plan.stages] == list(stages_for(config))
    longer = predicted(config.replace(zero_shot=("winogrande", "hellaswag")), device="cpu")
    extra_tokens = CPU_BATCH * (min(TASKS["hellaswag"].longest, 128) - TASKS["winogrande"].longest)  # context 128
    for stage in (s.stage for s in plan.stages if s.stage.endswith("zero_shot")):
        grew = longer.stage(stage).device_bytes - plan.stage(stage).device_bytes
        assert grew >= 2 * extra_tokens * 128 * 4  # two float32 logits tensors over the tiny model's 128 words



@pytest.mark.parametrize("family", ("llama", "opt"))
def test_one_pass_pruning_adds_the_paused_chunks_and_estimate_names_the_chunking(family, tmp_path):
    """Layer mode keeps every chunk's activations at the widest pause: they grow with the calibration windows, not
    with the chunk (batch) size; data-free pruning and block mode pause nothing."""
    model = str(save_tiny_model(tmp_path / family, family=family))
    base = {"model": model, "seqlen": 32, "method": "sparsegpt", "calib_samples": 512}
    shape, _ = model_facts(RunConfig.create("none", **base))

    def prune_stage(**fields) -> float:
        return predict_memory(RunConfig.create("none", **{**base, **fields}), shape, None, "cpu", "none").stage(
            "prune").device_bytes

    per_window = (memory_model.PAUSED_MEASURED * 32 * 4
                  * (memory_model.PAUSED_HIDDEN * shape.hidden + memory_model.PAUSED_WIDE * shape.widest))
    for batch in (2, 4):
        layer = RunConfig.create("none", sequential="layer", batch_size=batch, **base)
        assert memory_model._Terms(layer, shape, None, "cpu", "none").paused_chunks == pytest.approx(512 * per_window)
        assert prune_stage(sequential="layer", batch_size=batch) >= prune_stage(batch_size=batch)
        assert f"{512 // batch} chunks of {batch}" in memory_model.one_pass_chunks(layer, shape)
    assert prune_stage(sequential="layer", method="magnitude") == prune_stage(method="magnitude")
    assert memory_model.one_pass_chunks(RunConfig.create("none", **base), shape) is None
