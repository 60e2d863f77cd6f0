"""`perp run`: flags for every RunConfig field, one-line errors with exit code 2, JSON output."""

import dataclasses
import json

import pytest
from fixtures_tiny import tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)
from transformers import BertConfig, BertModel

from perp_engine.cli import build_parser, main
from perp_engine.config import RunConfig
from perp_engine.evaluation.recovery import recovery_text


def test_help_documents_every_config_field(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(RunConfig):
        assert "--" + f.name.replace("_", "-") in text
    assert text.count("(default:") >= len(dataclasses.fields(RunConfig))
    assert "magnitude, wanda, sparsegpt, ria, random" in text and "perp-masklora" in text


@pytest.fixture
def bert_dir(tmp_path):
    BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path / "bert")
    return tmp_path / "bert"


@pytest.mark.parametrize(
    "argv, field",
    [
        (["--sparsity", "1.5"], "sparsity"),
        (["--pattern", "4:4", "--sparsity", "0.5"], "pattern"),
        (["--pattern", "2:4", "--sparsity", "0.7"], "sparsity"),
        (["--method", "obs"], "method"),
        (["--preset", "perp-everything"], "preset"),
        (["--model", "no-such-org/no-such-model-xyz"], "model"),
        (["--model", "{bert}"], "model"),
        (["--mode", "retrain", "--train", "norms", "--steps", "0"], "steps"),
        (["--adapter", "masklora", "--mode", "retrain", "--rank", "0"], "rank"),
        (["--config", "{bad_json}"], "config"),
        (["--allocation", "owl", "--pattern", "2:4", "--sparsity", "0.5"], "allocation"),
        (["--allocation", "owl", "--owl-lambda", "0.4"], "owl_lambda"),
        (["--method", "ria", "--ria-power", "-1"], "ria_power"),
        (["--method", "ria", "--ria-permute", "lsa"], "ria_permute"),
        (["--refine", "dsnot", "--dsnot-max-cycles", "-3"], "dsnot_max_cycles"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, field, capsys, tmp_path, bert_dir, tiny_text_file, monkeypatch):
    monkeypatch.setenv("PERP_HOME", str(tmp_path / "home"))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"sparsity": 0.5,')
    argv = [a.format(bert=bert_dir, bad_json=bad_json) for a in argv]
    capsys.readouterr()
    code = main(["run", "--no-store", "--quiet", "--dataset", str(tiny_text_file), "--seqlen", "16", "--calib-samples", "4",
                 "--eval-tokens", "64", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "Traceback" not in err
    # the last line is ours (transformers may print its own load report above it for a wrong architecture)
    assert err.splitlines()[-1].startswith(f"perp: error: {field}:")


def test_run_writes_json_and_records_the_run(tiny_model_dir, tiny_text_file, tmp_path, capsys):
    out = tmp_path / "out.json"
    store = tmp_path / "runs.sqlite"
    argv = ["run", "--model", str(tiny_model_dir), "--dataset", str(tiny_text_file), "--method", "wanda",
            "--sparsity", "0.5", "--seqlen", "16", "--calib-samples", "4", "--eval-tokens", "128",
            "--preset", "perp", "--steps", "2", "--quiet", "--store", str(store), "--json", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    for key in ("config", "dense_ppl", "pruned_ppl", "final_ppl", "sparsity", "layers", "timings", "peak_memory_mb",
                "trainable_params", "total_params", "trainable_fraction", "train_loss"):
        assert key in data
    assert {"name", "block", "sparsity", "recon_error", "recon_error_after"} <= set(data["layers"][0])
    assert data["config"]["preset"] == "perp" and data["config"]["steps"] == 2
    out_text = capsys.readouterr().out
    assert "recorded as run 1" in out_text
    assert "of the model's" in out_text and "adapter weights" in out_text  # the head LoRA, beside the share
    assert "note: biases: no bias parameters" in out_text and "warning: biases" not in out_text  # a LLaMA's fact
    assert "estimated " in out_text and data["estimate"]["seconds"] > 0
    assert main(["runs", "1", "--store", str(store)]) == 0
    shown = capsys.readouterr().out
    recovered = recovery_text(data["dense_ppl"], data["pruned_ppl"], data["final_ppl"])
    assert (recovered in shown) if recovered else ("of the log-ppl gap" not in shown)  # the tiny model decides
    assert "trainable: " in shown and "of the model's" in shown and "note: biases: no bias parameters" in shown
    assert "(estimated " in shown
    assert main(["runs", "--store", str(store), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert runs[0]["status"] == "done" and runs[0]["final_ppl"] == pytest.approx(data["final_ppl"])
