"""The Inside a layer page through Streamlit's AppTest, on the tiny saved model chosen on Experiment: it draws
without training, trains the adapters when asked, and restores its settings from the page address."""

from __future__ import annotations

import json

import pytest
from fixtures_tiny import save_tiny_model, tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)
from test_app_pages import open_page, texts

CHARTS = 8  # scores, masks, Jaccard, agreement, error bars, error curves, SparseGPT update, adapter zeros


@pytest.fixture
def page(tmp_path, monkeypatch, tiny_model_dir, tiny_text_file):  # noqa: F811
    return open_page("inside_layer", tmp_path / "runs.sqlite", monkeypatch, exp_model=str(tiny_model_dir),
                     exp_dataset=str(tiny_text_file))


def titles(at) -> list[str]:
    return [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def train_button(at):
    return next(b for b in at.button if b.label == "Train the adapters")


def train(at) -> None:
    train_button(at).click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_inside_layer_defaults_to_a_mid_depth_q_proj_of_the_experiment_model(page, tiny_model_dir):  # noqa: F811
    assert page.title[0].value == "Inside a layer"
    assert str(tiny_model_dir) in texts(page, "caption")
    assert page.slider(key="inside_block").value == 1 and page.selectbox(key="inside_linear").value == "self_attn.q_proj"
    assert len(page.get("plotly_chart")) == CHARTS - 1  # everything but the adapters, which wait for the button
    assert any(t.startswith("Which weights each method keeps at 50% sparsity") for t in titles(page))
    assert not page.metric and not train_button(page).disabled
    assert "Press **Train the adapters**" in texts(page, "caption")
    train(page)
    assert len(page.get("plotly_chart")) == CHARTS and train_button(page).disabled
    # the tiny q_proj is 32 x 32; Wanda prunes 16 of every row's 32 weights
    assert metrics(page) == {"LoRA: zeros left after the merge": "0 of 512",
                             "MaskLoRA: zeros left after the merge": "512 of 512"}


def test_inside_layer_follows_its_widgets(page):
    page.selectbox(key="inside_linear").set_value("mlp.down_proj").run()  # (32, 64)
    page.slider(key="inside_sparsity").set_value(0.25).run()
    assert not page.exception
    assert any(t.startswith("Which weights each method keeps at 25% sparsity") for t in titles(page))
    assert not page.metric  # a new setting waits for the button again
    train(page)
    assert metrics(page)["MaskLoRA: zeros left after the merge"] == "512 of 512"  # 16 of 64 in each of 32 rows
    page.button_group(key="inside_pattern").set_value("2:4").run()
    assert page.slider(key="inside_sparsity").disabled
    assert any(t.startswith("Which weights each method keeps at 50% sparsity, 2:4") for t in titles(page))
    page.selectbox(key="inside_adapter_method").set_value("magnitude").run()
    train(page)
    assert metrics(page)["LoRA: zeros left after the merge"] == "0 of 1,024"
    page.button_group(key="inside_pattern").set_value("unstructured").run()
    assert not page.metric
    page.selectbox(key="inside_adapter_method").set_value("wanda").run()  # a setting trained before: no click
    assert metrics(page)["MaskLoRA: zeros left after the merge"] == "512 of 512" and train_button(page).disabled


def test_inside_layer_says_when_the_model_cannot_load(tmp_path, monkeypatch):
    at = open_page("inside_layer", tmp_path / "runs.sqlite", monkeypatch, exp_model=str(tmp_path / "nowhere"))
    assert "model:" in texts(at, "error") and "chosen on Experiment" in texts(at, "error")
    assert not at.get("plotly_chart")


def test_inside_layer_moves_remembered_choices_into_another_models_range(tmp_path, monkeypatch, tiny_text_file):  # noqa: F811
    gpt2 = save_tiny_model(tmp_path / "tiny-gpt2", "gpt2")  # 2 blocks; attn.c_attn is (96, 32)
    at = open_page("inside_layer", tmp_path / "runs.sqlite", monkeypatch, exp_model=str(gpt2),
                   exp_dataset=str(tiny_text_file), inside_block=15, inside_linear="mlp.down_proj", inside_row=400)
    assert at.slider(key="inside_block").value == 1
    assert at.selectbox(key="inside_linear").value == "attn.c_attn"  # no q_proj: the first linear
    assert at.slider(key="inside_row").value == 96 - 64
    assert len(at.get("plotly_chart")) == CHARTS - 1


def test_inside_layer_restores_its_settings_from_the_page_address(tmp_path, monkeypatch, tiny_model_dir,  # noqa: F811
                                                                   tiny_text_file):  # noqa: F811
    """A reload: no session state, only the address the page wrote, model and text included (a select box
    writes the option as it shows it)."""
    address = {"model": str(tiny_model_dir), "text": str(tiny_text_file), "inside_block": "0",
               "inside_linear": "mlp.down_proj (32 × 64)", "inside_pattern": "unstructured", "inside_sparsity": "0.25",
               "inside_windows": "3", "inside_seqlen": "16", "inside_adapter_method": "Magnitude",
               "inside_adapter_steps": "5"}
    at = open_page("inside_layer", tmp_path / "runs.sqlite", monkeypatch, query=address)
    assert str(tiny_model_dir) in texts(at, "caption") and str(tiny_text_file) in texts(at, "caption")
    assert at.slider(key="inside_block").value == 0 and at.selectbox(key="inside_linear").value == "mlp.down_proj"
    assert at.slider(key="inside_sparsity").value == 0.25
    assert (at.number_input(key="inside_windows").value, at.number_input(key="inside_seqlen").value) == (3, 16)
    assert at.selectbox(key="inside_adapter_method").value == "magnitude"
    assert at.number_input(key="inside_adapter_steps").value == 5
    assert any(t.startswith("Which weights each method keeps at 25% sparsity") for t in titles(at))
    assert "48 calibration tokens" in texts(at, "caption")  # 3 windows of 16 tokens
    assert dict(at.query_params)["model"] == str(tiny_model_dir)  # still in the address for the next reload
    train(at)
    assert "after 5 steps" in texts(at, "caption")
