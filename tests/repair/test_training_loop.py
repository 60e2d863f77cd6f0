"""The one training loop on a toy problem: its schedule, clipping, guard with rollback, masks and settings checks.
Retraining (tests/repair/test_retrain.py), reconstruction (test_reconstruct.py) and the adapter demo go through it."""

import pytest
import torch
from torch import nn

from perp_engine.errors import PerpError
from perp_engine.repair.training_loop import Optimisation, Probe, backward_if_finite, train


def toy(poison_at: int | None = None):
    """A 4 -> 3 linear fitted to a fixed target; the loss is NaN from call ``poison_at`` on."""
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    x, target = torch.randn(8, 4), torch.randn(8, 3)
    calls = {"n": 0, "seen": []}

    def step_loss():
        calls["n"] += 1
        calls["seen"].append([p.detach().clone() for p in layer.parameters()])
        loss = (layer(x) - target).pow(2).mean()
        if poison_at is not None and calls["n"] >= poison_at:
            loss = loss * float("nan")
        return backward_if_finite(loss)

    return layer, step_loss, calls


def test_all_steps_run_and_the_loss_falls():
    layer, step_loss, _ = toy()
    outcome = train(list(layer.parameters()), step_loss, Optimisation(steps=20, lr=5e-2, warmup_ratio=0.0),
                    rollback=True)
    assert outcome.stopped is None and len(outcome.losses) == 20
    assert outcome.losses[-1] < 0.5 * outcome.losses[0]
    assert all(p.grad is None for p in layer.parameters())


def test_a_non_finite_loss_restores_the_weights_the_step_before_was_evaluated_with():
    layer, step_loss, calls = toy(poison_at=3)
    outcome = train(list(layer.parameters()), step_loss, Optimisation(steps=6, lr=5e-2, warmup_ratio=0.0),
                    rollback=True)
    assert outcome.stopped == "loss became nan at step 3; kept the weights of step 2"
    assert len(outcome.losses) == 2
    for now, then, later in zip(layer.parameters(), calls["seen"][1], calls["seen"][2]):
        assert torch.equal(now.detach(), then) and not torch.equal(now.detach(), later)


def test_without_rollback_the_weights_that_produced_the_loss_stay():
    layer, step_loss, calls = toy(poison_at=3)
    outcome = train(list(layer.parameters()), step_loss, Optimisation(steps=6, lr=5e-2, warmup_ratio=0.0),
                    rollback=False)
    assert outcome.stopped.startswith("loss became nan at step 3; stopped with the weights that produced it (15 ")
    assert all(torch.equal(now.detach(), seen) for now, seen in zip(layer.parameters(), calls["seen"][2]))


def test_a_non_finite_gradient_stops_before_the_step():
    layer, step_loss, calls = toy()
    layer.weight.register_hook(lambda grad: grad * float("inf") if calls["n"] == 2 else grad)
    outcome = train(list(layer.parameters()), step_loss, Optimisation(steps=6, lr=5e-2, warmup_ratio=0.0),
                    rollback=True)
    assert outcome.stopped == "the gradient norm became inf at step 2; stopped before applying it"
    assert all(torch.equal(now.detach(), seen) for now, seen in zip(layer.parameters(), calls["seen"][1]))


@pytest.mark.parametrize("schedule, factors", [("linear", [0.0, 1.0, 0.5]), ("constant", [1.0, 1.0, 1.0])])
def test_schedules(schedule, factors):
    layer, step_loss, _ = toy()
    lrs = []
    how = Optimisation(steps=3, lr=1e-2, warmup_ratio=0.34, schedule=schedule)
    original = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        lrs.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    torch.optim.AdamW.step = spy
    try:
        train(list(layer.parameters()), step_loss, how, rollback=False)
    finally:
        torch.optim.AdamW.step = original
    assert lrs == pytest.approx([1e-2 * f for f in factors])


def test_clipping_bounds_the_update():
    """The optimizer sees the gradient scaled down to the clipping norm."""
    layer, step_loss, _ = toy()
    seen = []
    original = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad)
                                                          for p in self.param_groups[0]["params"]])))
        return original(self, *args, **kwargs)

    torch.optim.AdamW.step = spy
    try:
        train(list(layer.parameters()), step_loss, Optimisation(steps=2, lr=1e-2, max_grad_norm=1e-3), rollback=False)
    finally:
        torch.optim.AdamW.step = original
    assert all(float(norm) == pytest.approx(1e-3, rel=1e-4) for norm in seen)


@pytest.mark.parametrize("settings, field", [
    ({"steps": 0}, "steps"), ({"steps": True}, "steps"), ({"lr": 0.0}, "lr"), ({"lr": 1.0}, "lr"),
    ({"warmup_ratio": 1.0}, "warmup_ratio"), ({"weight_decay": -1.0}, "weight_decay"),
    ({"weight_decay": float("nan")}, "weight_decay"), ({"max_grad_norm": float("inf")}, "max_grad_norm"),
    ({"schedule": "cosine"}, "schedule"),
])
def test_bad_settings_name_the_field(settings, field):
    with pytest.raises(PerpError) as err:
        Optimisation(**({"steps": 2, "lr": 1e-3} | settings))
    assert err.value.field == field


def test_nothing_to_train_is_refused():
    with pytest.raises(PerpError) as err:
        train([], lambda: 0.0, Optimisation(steps=1, lr=1e-3), rollback=True)
    assert err.value.field == "train"


def held_out_error(layer: nn.Linear):
    """A probe's measurement: the layer's error on windows the toy never trains on."""
    torch.manual_seed(1)
    x, target = torch.randn(8, 4), torch.randn(8, 3)
    return lambda: float((layer(x) - target).pow(2).mean().detach())


@pytest.mark.parametrize("steps, every, taken", [(10, 3, [0, 3, 6, 9, 10]), (6, 2, [0, 2, 4, 6]), (4, 9, [0, 4])])
def test_the_probe_measures_at_step_0_every_k_steps_and_after_the_last(steps, every, taken):
    layer, step_loss, _ = toy()
    outcome = train(list(layer.parameters()), step_loss, Optimisation(steps=steps, lr=5e-2, warmup_ratio=0.0),
                    rollback=True, probe=Probe(every, held_out_error(layer)))
    assert [p.step for p in outcome.curve] == taken
    assert outcome.curve[-1].value == pytest.approx(held_out_error(layer)())  # the weights training ended with
    seconds = [p.seconds for p in outcome.curve]
    assert seconds[0] < 0.01 and seconds == sorted(seconds)
    assert outcome.probe_seconds > 0


def test_the_probe_does_not_change_what_is_trained():
    plain, step_loss, _ = toy()
    train(list(plain.parameters()), step_loss, Optimisation(steps=8, lr=5e-2), rollback=True)
    probed, step_loss, _ = toy()
    train(list(probed.parameters()), step_loss, Optimisation(steps=8, lr=5e-2), rollback=True,
          probe=Probe(2, held_out_error(probed)))
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), probed.parameters()))


def test_the_curve_stops_where_training_stopped():
    layer, step_loss, _ = toy(poison_at=5)
    outcome = train(list(layer.parameters()), step_loss, Optimisation(steps=10, lr=5e-2), rollback=True,
                    probe=Probe(2, held_out_error(layer)))
    assert outcome.stopped.startswith("loss became nan at step 5")
    assert [p.step for p in outcome.curve] == [0, 2, 4]


def test_a_probe_needs_a_whole_number_of_steps():
    with pytest.raises(PerpError, match="eval_every"):
        Probe(0, lambda: 0.0)
