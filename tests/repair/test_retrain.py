"""The LM-loss retraining loop: it learns, keeps masks with a keeper, schedules, accumulates, checkpoints,
stops and restores on a non-finite loss, and leaves the model in the mode it found it."""

import pytest
import torch
from sparse_models import pruned_tiny
from tiny_models import random_tokens, tiny_gpt2, tiny_llama

from perp_engine.errors import PerpError
from perp_engine.repair.adapters import attach_adapters, merge_adapters
from perp_engine.repair.mask_keeper import MaskKeeper
from perp_engine.repair.retrain import retrain
from perp_engine.repair.subsets import select_trainable


def eval_loss(model, samples):
    with torch.no_grad():
        return float(model(samples, labels=samples).loss)


def trainable_state(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("family, subsets, adapter, lr", [
    ("llama", ("norms", "head"), None, 3e-2),
    ("gpt2", ("biases", "norms", "head-lora"), "masklora", 3e-2),
    ("llama", ("full",), None, 5e-3),
])
def test_retraining_lowers_the_loss_on_repeated_data(family, subsets, adapter, lr):
    model = pruned_tiny(family)
    if adapter:
        attach_adapters(model, adapter, rank=4, alpha=8.0)
    select_trainable(model, subsets)
    samples = random_tokens(4, 16, seed=5)
    before = eval_loss(model, samples)
    outcome = retrain(model, samples, steps=12, lr=lr, batch_size=4, warmup_ratio=0.1)
    assert outcome.stopped is None and len(outcome.losses) == 12 and outcome.seconds > 0
    merge_adapters(model)
    assert eval_loss(model, samples) < before - 0.5


def test_full_retraining_with_keeper_keeps_every_zero():
    model = pruned_tiny("llama")
    keeper = MaskKeeper(model)
    select_trainable(model, ("full",))
    retrain(model, random_tokens(4, 16), steps=3, lr=1e-2, warmup_ratio=0.0, keeper=keeper)
    keeper.verify()
    without = pruned_tiny("llama")
    unkept = MaskKeeper(without)
    select_trainable(without, ("full",))
    retrain(without, random_tokens(4, 16), steps=3, lr=1e-2, warmup_ratio=0.0)
    with pytest.raises(RuntimeError, match="pruned weights became nonzero"):
        unkept.verify()


def test_keeper_apply_and_verify_name_the_layer():
    model = pruned_tiny("gpt2")
    keeper = MaskKeeper(model)
    name = "transformer.h.1.mlp.c_fc"
    layer = model.get_submodule(name)
    with torch.no_grad():
        layer.weight.add_(1.0)
    with pytest.raises(RuntimeError, match=name):
        keeper.verify()
    keeper.apply()
    keeper.verify()
    assert bool((layer.weight == 0).any())


def test_keeper_follows_names_through_adapters_and_records_dense_layers():
    model = tiny_llama()  # not pruned: every layer dense
    keeper = MaskKeeper(model)
    assert keeper.pruned == [] and all(z is None for z in keeper.zeros.values())
    attach_adapters(model, "masklora", rank=2)
    keeper.verify()
    layer = model.get_submodule("model.layers.0.mlp.up_proj").base_layer
    with torch.no_grad():
        layer.weight[0, 0] = 0.0
    with pytest.raises(RuntimeError, match="model.layers.0.mlp.up_proj: .* 1 kept weights became zero"):
        keeper.verify()


def test_non_finite_loss_stops_and_restores_the_last_good_weights():
    model = tiny_llama()
    select_trainable(model, ("norms",))
    snapshots = {0: trainable_state(model)}

    def poison(module, args, output):  # once step 2 is done, the hidden states (and so step 3's loss) are NaN
        return output * float("nan") if 2 in snapshots else output

    def progress(step, steps, loss):
        snapshots[step] = trainable_state(model)

    model.model.norm.register_forward_hook(poison)
    outcome = retrain(model, random_tokens(4, 16), steps=6, lr=1e-2, batch_size=2, warmup_ratio=0.0, progress=progress)
    assert outcome.stopped == "loss became nan at step 3; kept the weights of step 2"
    assert len(outcome.losses) == 2
    # the weights step 2 was evaluated with are those after step 1's update
    after = trainable_state(model)
    assert all(torch.equal(after[n], snapshots[1][n]) for n in after)
    assert not all(torch.equal(after[n], snapshots[0][n]) for n in after)


def test_full_retraining_keeps_no_rollback_copy_and_stops_at_a_non_finite_loss():
    """Every weight trains: no copy of them all is kept (it would double the memory), so a NaN loss at step 3
    stops training with the weights that produced it (with a copy they would be step 1's); the run's final
    check judges them."""
    model = tiny_llama()
    select_trainable(model, ("full",))
    snapshots = {}

    def poison(module, args, output):  # once step 2 is done, the hidden states (and so step 3's loss) are NaN
        return output * float("nan") if 2 in snapshots else output

    def progress(step, steps, loss):
        snapshots[step] = trainable_state(model)

    model.model.norm.register_forward_hook(poison)
    outcome = retrain(model, random_tokens(4, 16), steps=6, lr=1e-2, batch_size=2, warmup_ratio=0.0, progress=progress)
    assert outcome.stopped.startswith("loss became nan at step 3; stopped with the weights that produced it (")
    after = trainable_state(model)
    assert all(torch.equal(after[n], snapshots[2][n]) for n in after)


def test_a_non_finite_gradient_stops_before_the_step():
    model = tiny_llama()
    select_trainable(model, ("norms",))
    norm = model.model.norm.weight
    steps = {"n": 0}
    norm.register_hook(lambda grad: grad * float("inf") if steps["n"] == 2 else grad)
    snapshots = {}

    def progress(step, total, loss):
        steps["n"] = step
        snapshots[step] = trainable_state(model)

    outcome = retrain(model, random_tokens(4, 16), steps=6, lr=1e-2, batch_size=2, warmup_ratio=0.0, progress=progress)
    assert outcome.stopped == "the gradient norm became inf at step 3; stopped before applying it"
    after = trainable_state(model)
    assert all(torch.equal(after[n], snapshots[2][n]) for n in after)


def test_warmup_schedule_starts_at_zero_learning_rate():
    model = tiny_llama()
    select_trainable(model, ("norms",))
    start = trainable_state(model)
    states = []
    retrain(model, random_tokens(4, 16), steps=4, lr=1e-2, warmup_ratio=0.5,
            progress=lambda *_: states.append(trainable_state(model)))
    assert all(torch.equal(states[0][n], start[n]) for n in start)  # step 1: lr factor 0/2
    assert not all(torch.equal(states[1][n], start[n]) for n in start)


def test_gradient_accumulation_equals_the_larger_batch():
    results = []
    for batch_size, grad_accum in ((4, 1), (2, 2)):
        model = tiny_llama()
        select_trainable(model, ("norms", "head"))
        outcome = retrain(model, random_tokens(8, 16), steps=2, lr=1e-2, batch_size=batch_size,
                          grad_accum=grad_accum, warmup_ratio=0.0)
        results.append((outcome.losses, trainable_state(model)))
    (losses_a, state_a), (losses_b, state_b) = results
    assert losses_a == pytest.approx(losses_b, rel=1e-5)
    for name in state_a:
        torch.testing.assert_close(state_a[name], state_b[name], atol=1e-6, rtol=1e-5)


def test_gradient_checkpointing_with_frozen_embeddings_gives_the_same_run():
    runs = []
    for checkpointing in (False, True):
        model = pruned_tiny("llama")
        attach_adapters(model, "masklora", rank=4)
        select_trainable(model, ("norms",))
        outcome = retrain(model, random_tokens(4, 16), steps=3, lr=1e-2, warmup_ratio=0.0,
                          grad_checkpointing=checkpointing)
        runs.append(outcome.losses)
        assert not model.is_activation_checkpointing
        assert not getattr(model, "_require_grads_hooks", None)
    assert runs[0] == pytest.approx(runs[1], rel=1e-5)
    assert runs[0][0] != runs[0][-1]


def test_train_mode_during_and_mode_restored_after():
    model = tiny_gpt2()  # dropout 0.1: the mode matters
    select_trainable(model, ("biases",))
    modes = []
    retrain(model, random_tokens(4, 16), steps=2, lr=1e-3, progress=lambda *_: modes.append(model.training))
    assert modes == [True, True]
    assert model.training is False


def test_seeded_order_is_reproducible():
    def run(seed):
        model = tiny_gpt2()
        select_trainable(model, ("norms",))
        return retrain(model, random_tokens(8, 16), steps=3, lr=1e-2, batch_size=2, seed=seed).losses

    assert run(1) == run(1)
    assert run(1) != run(2)


@pytest.mark.parametrize("kwargs, field", [
    ({"steps": 0}, "steps"),
    ({"lr": 0.0}, "lr"),
    ({"batch_size": 0}, "batch_size"),
    ({"grad_accum": 0}, "grad_accum"),
    ({"warmup_ratio": 1.0}, "warmup_ratio"),
    ({"samples": torch.zeros(4, 8)}, "train_samples"),
])
def test_bad_arguments_name_the_field(kwargs, field):
    model = tiny_llama()
    select_trainable(model, ("norms",))
    args = {"steps": 2, "lr": 1e-3, "samples": random_tokens(2, 8)} | kwargs
    with pytest.raises(PerpError) as err:
        retrain(model, args.pop("samples"), **args)
    assert err.value.field == field


def test_nothing_to_train_is_refused():
    model = tiny_llama()
    model.requires_grad_(False)
    with pytest.raises(PerpError) as err:
        retrain(model, random_tokens(2, 8), steps=1, lr=1e-3)
    assert err.value.field == "train"


@pytest.mark.parametrize("change, message", [
    (lambda w: w.view(-1)[int((w.view(-1) == 0).nonzero()[0])].fill_(0.5), "zeros before"),  # a pruned weight revived
    (lambda w: (w.view(-1)[int((w.view(-1) == 0).nonzero()[0])].fill_(0.5),
                w.view(-1)[int((w.view(-1) != 0).nonzero()[0])].fill_(0.0)), "at other positions"),  # moved
])
def test_a_keeper_without_masks_still_catches_a_changed_pattern(change, message):
    """Without re-applying, only a fingerprint per layer is kept (no mask in memory), and it still sees a
    revived weight or a zero that moved with the count unchanged."""
    model = pruned_tiny("llama")
    keeper = MaskKeeper(model, reapply=False)
    assert keeper.pruned == [] and keeper.fingerprints
    keeper.verify()
    name = next(iter(keeper.fingerprints))
    with torch.no_grad():
        change(model.get_submodule(name).weight)
    with pytest.raises(RuntimeError, match=f"{name}: sparsity mask changed.*{message}"):
        keeper.verify()


def test_a_keeper_without_masks_sees_two_zeros_swap_places_inside_a_2_4_group():
    """Zeros at {0, 3} of a group of four moved to {1, 2}: same count, same sum of positions (what a linear
    checksum would see), a different 2:4 pattern."""
    model = pruned_tiny("llama")
    name = next(iter(MaskKeeper(model, reapply=False).fingerprints))
    weight = model.get_submodule(name).weight
    with torch.no_grad():
        weight[0, :4] = torch.tensor([0.0, 0.5, -0.5, 0.0])
    keeper = MaskKeeper(model, reapply=False)
    keeper.verify()
    with torch.no_grad():
        weight[0, :4] = torch.tensor([0.5, 0.0, 0.0, -0.5])
    with pytest.raises(RuntimeError, match=f"{name}: sparsity mask changed.*at other positions"):
        keeper.verify()
