"""OWL's allocation against the official code (luuyin/OWL), frozen in tests/pruning/references/owl_*.safetensors.

The references were written by ``scripts/reference_owl.py``, which ran the official ``prune_wanda_outlier``,
``prune_sparsegpt_outlier`` and ``prune_mag_outlier`` (commit in each file's metadata) on a tiny random LLaMA and
OPT of 4 blocks: every block's outlier share, the block densities the official code computed, and for Wanda the
official masks. Here the same weights and calibration ids go through our pipeline.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from official_references import assert_pruned_as_official, load_reference

from perp_engine.model.capture import capture_block_inputs
from perp_engine.pruning.owl import block_sparsities, outlier_share, owl_allocation
from perp_engine.pruning.sequential import prune_model

FAMILIES = ["llama", "opt"]


def cases():
    for family in FAMILIES:
        _, _, meta = load_reference(f"owl_{family}")
        for index, case in enumerate(json.loads(meta["cases"])):
            yield pytest.param(family, index, case, id=f"{family}-{case['function']}-{case['sparsity']}")


@pytest.mark.parametrize("family, index, case", list(cases()))
def test_allocation_and_masks_equal_the_official_code(family, index, case):
    model, ref, _ = load_reference(f"owl_{family}")
    inputs = capture_block_inputs(model, ref["ids"], batch_size=4)
    allocation = owl_allocation(model, inputs, sparsity=case["sparsity"], m=case["Hyper_m"], lam=case["Lamda"])
    assert allocation.outlier_share == pytest.approx(ref[f"case{index}.shares"].tolist(), abs=1e-12)
    official = (1 - ref[f"case{index}.density"]).tolist()
    assert allocation.sparsity == pytest.approx(official, abs=1e-12)
    assert np.mean(allocation.sparsity) == pytest.approx(case["sparsity"], abs=1e-12)
    if case["function"] != "prune_wanda_outlier":
        return
    prune_model(model, inputs, method="wanda", sparsity=case["sparsity"], block_sparsity=allocation.sparsity)
    assert_pruned_as_official(model, ref, f"case{index}")


def test_blocks_with_more_outliers_are_pruned_less_and_the_mean_is_the_target():
    shares = [0.2, 1.4, 0.8, 0.5, 1.4]
    got = block_sparsities(shares, sparsity=0.6, lam=0.1)
    assert np.mean(got) == pytest.approx(0.6, abs=1e-12)
    assert max(got) - min(got) == pytest.approx(0.2)  # the spread is 2 lambda
    order = sorted(range(5), key=lambda i: shares[i])
    assert [got[i] for i in order] == sorted(got, reverse=True)
    assert got[1] == got[4]


def test_equal_shares_or_zero_lambda_give_the_target_everywhere():
    assert block_sparsities([0.7, 0.7, 0.7], sparsity=0.5, lam=0.08) == [0.5, 0.5, 0.5]
    assert block_sparsities([0.1, 0.9], sparsity=0.5, lam=0.0) == pytest.approx([0.5, 0.5])


def test_outlier_share_counts_scores_above_m_times_the_mean_of_all_linears_together():
    a = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 1.0, 13.0]])  # mean of all 8 scores is 2.5; only 13 is above 2 x 2.5
    assert outlier_share([a, b], 2.0) == pytest.approx(100 / 8)
    assert outlier_share([a, b], 6.0) == 0.0
