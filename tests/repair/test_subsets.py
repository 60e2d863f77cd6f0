"""Parameter subsets: exactly the chosen tensors train, counts match hand-computed numbers, tied heads are
untied or reported, missing subsets warn, meta-device models count the same as real ones."""

import pytest
import torch
from sparse_models import pruned_tiny
from tiny_models import TINY_MODELS, random_tokens, tiny_gpt2, tiny_llama, tiny_opt

from perp_engine.errors import PerpError
from perp_engine.model.blocks import find_decoder_blocks
from perp_engine.repair.adapters import attach_adapters, merge_adapters
from perp_engine.repair.retrain import retrain
from perp_engine.repair.subsets import HEAD_LORA_RANK, select_trainable
from perp_engine.repair.tying import untie_head


def llama_dims(model):
    cfg = model.config
    kv = cfg.num_key_value_heads * cfg.hidden_size // cfg.num_attention_heads
    return cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, kv, cfg.vocab_size


def trainable_names(model):
    return sorted(n for n, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("family, norm_count", [
    ("llama", lambda L, h: (2 * L + 1) * h),       # RMSNorm: weight only
    ("qwen2", lambda L, h: (2 * L + 1) * h),
    ("opt", lambda L, h: (2 * L + 1) * 2 * h),     # LayerNorm: weight and bias
    ("gpt2", lambda L, h: (2 * L + 1) * 2 * h),
])
def test_norms_found_by_type_in_every_family(family, norm_count):
    model = TINY_MODELS[family]()
    report = select_trainable(model, ("norms",))
    layers, hidden = model.config.num_hidden_layers, model.config.hidden_size
    assert report.trainable == report.by_category["norms"] == norm_count(layers, hidden)
    assert trainable_names(model) == sorted(report.tensors)
    assert report.warnings == []


def test_llama_counts_by_hand():
    model = pruned_tiny("llama")
    layers, hidden, inter, kv, vocab = llama_dims(model)
    total_before = sum(p.numel() for p in model.parameters())
    rank = 4
    attach_adapters(model, "masklora", rank=rank, alpha=8.0)
    per_layer = rank * ((hidden + hidden) * 2 + (hidden + kv) * 2 + (hidden + inter) * 3)  # q,o; k,v; gate,up,down
    report = select_trainable(model, ("biases", "norms", "head-lora"))
    head_lora = HEAD_LORA_RANK * (hidden + vocab)
    assert report.by_category == {"adapter": layers * per_layer, "head-lora": head_lora,
                                  "norms": (2 * layers + 1) * hidden, "biases": 0}
    assert report.trainable == layers * per_layer + head_lora + (2 * layers + 1) * hidden
    # the head was tied: untying adds one vocab x hidden copy; the factors are counted in the total too
    assert report.total == total_before + vocab * hidden + layers * per_layer + head_lora
    # the share is of the model's own parameters; the adapters and the head copy are counted apart
    assert (report.model_params, report.adapter_params, report.head_copy_params) == (
        total_before, layers * per_layer + head_lora, vocab * hidden)
    assert report.fraction == pytest.approx(report.trainable / total_before)
    # a LLaMA has no biases: a fact about the model while the rest trains, so a note, not a warning
    assert report.warnings == [] and any("no bias parameters" in n for n in report.notes)
    assert any("its own copy when the LoRA merges" in n for n in report.notes)
    assert model.lm_head.base_layer.weight is model.model.embed_tokens.weight  # no copy while training
    assert trainable_names(model) == sorted(report.tensors)


def test_training_the_whole_tied_head_unties_it_first():
    model = pruned_tiny("llama")
    report = select_trainable(model, ("head",))
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    assert any("untied it so the head trains on its own copy" in n for n in report.notes)


@pytest.mark.parametrize("family", ["gpt2", "opt"])
def test_embeddings_are_token_and_position(family):
    model = TINY_MODELS[family]()
    report = select_trainable(model, ("embeddings",), untie=False)
    expected = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    assert len([m for m in model.modules() if isinstance(m, torch.nn.Embedding)]) == 2
    assert report.trainable == expected
    assert any("trains the head too" in n for n in report.notes)  # both tiny models tie the head


def test_full_trains_everything_and_tied_tensors_count_once():
    model = tiny_llama()
    report = select_trainable(model, ("full",))
    unique = {id(p): p.numel() for p in model.parameters()}
    assert report.trainable == report.total == sum(unique.values())
    assert report.by_category == {"full": report.total}


def test_head_without_untie_trains_the_shared_tensor():
    model = tiny_llama()
    report = select_trainable(model, ("head",), untie=False)
    assert model.lm_head.weight is model.get_input_embeddings().weight
    assert report.trainable == model.config.vocab_size * model.config.hidden_size
    assert any("trains the token embeddings too" in n for n in report.notes)


def test_untie_gives_the_head_its_own_copy():
    model = tiny_llama()
    assert untie_head(model) is True
    assert model.lm_head.weight is not model.get_input_embeddings().weight
    assert torch.equal(model.lm_head.weight, model.get_input_embeddings().weight)
    assert model.config.tie_word_embeddings is False
    model.tie_weights()
    assert model.lm_head.weight is not model.get_input_embeddings().weight
    assert untie_head(model) is False


def test_head_lora_on_tied_model_unties_and_leaves_embeddings_alone():
    model = pruned_tiny("llama")
    embeddings = model.get_input_embeddings().weight.detach().clone()
    head = model.lm_head.weight.detach().clone()
    report = select_trainable(model, ("head-lora",))
    assert report.by_category == {"head-lora": HEAD_LORA_RANK * (model.config.hidden_size + model.config.vocab_size)}
    samples = random_tokens(4, 16)
    outcome = retrain(model, samples, steps=4, lr=5e-2, batch_size=2, warmup_ratio=0.0)
    assert outcome.stopped is None
    notes = merge_adapters(model)
    assert any("lm_head" in n and "merged" in n for n in notes)
    assert torch.equal(model.get_input_embeddings().weight, embeddings)
    assert not torch.equal(model.lm_head.weight, head)
    assert type(model.lm_head) is torch.nn.Linear


def test_scope_limits_selection_to_one_block():
    model = tiny_opt()
    _, blocks = find_decoder_blocks(model)
    report = select_trainable(model, ("biases", "norms", "head-lora"), scope=blocks[1])
    assert report.tensors and all(".layers.1." in n for n in report.tensors)
    assert trainable_names(model) == sorted(report.tensors)
    assert any(n.startswith("head-lora:") and "scope" in n for n in report.notes) and report.warnings == []


def test_a_recipe_that_trains_nothing_warns():
    model = tiny_opt()
    _, blocks = find_decoder_blocks(model)
    report = select_trainable(model, ("head-lora",), scope=blocks[1])
    assert report.trainable == 0 and any(w.startswith("head-lora:") for w in report.warnings) and not report.notes
    assert model.lm_head.weight is model.get_input_embeddings().weight  # nothing outside the block touched


def test_attached_adapters_stay_trainable_and_are_counted():
    model = pruned_tiny("gpt2")
    adapters = attach_adapters(model, "scalelora", rank=2)
    report = select_trainable(model, ())
    factors = sum(p.numel() for a in adapters.values() for p in (a.lora_A, a.lora_B))
    assert report.by_category == {"adapter": factors} and report.trainable == factors
    assert all(a.lora_A.requires_grad and not a.base_layer.weight.requires_grad for a in adapters.values())


def test_meta_model_counts_like_the_real_one():
    real = tiny_llama()
    with torch.device("meta"):
        meta = tiny_llama()
    counts = []
    for model in (real, meta):
        attach_adapters(model, "masklora", rank=4)
        report = select_trainable(model, ("biases", "norms", "head-lora"))
        counts.append((report.trainable, report.total, report.by_category))
    assert counts[0] == counts[1]


def test_unknown_subset_is_refused():
    with pytest.raises(PerpError) as err:
        select_trainable(tiny_gpt2(), ("layernorms",))
    assert err.value.field == "train"


@pytest.mark.slow
def test_real_model_norm_count():
    """SmolLM2-135M: 30 blocks x 2 RMSNorms + the final one, hidden 576 -> 61 x 576."""
    models = pytest.importorskip("perp_engine.model.load")
    model = models.load_skeleton("smollm2-135m")
    report = select_trainable(model, ("norms",))
    assert report.by_category["norms"] == 35_136
