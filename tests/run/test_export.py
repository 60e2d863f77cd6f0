"""Export round trip: the exported folder loads with transformers and gives the stored perplexity and sparsity;
copy of a kept model vs recomputation; refusing a non-empty folder; nothing written on failure; the app's exports
roots; links in a kept model; a stored trust_remote_code."""

import json
import os
from pathlib import Path

import pytest
import torch
from fixtures_tiny import perp_home, tiny_model_dir, tiny_run_config, tiny_text_file  # noqa: F401 (fixtures)
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from perp_engine.cli import main
from perp_engine.data.corpora import load_corpus
from perp_engine.data.sampling import eval_windows
from perp_engine.errors import PerpError
from perp_engine.evaluation.perplexity import perplexity
from perp_engine.evaluation.sparsity import model_sparsity
from perp_engine.jobs.worker import execute_run
from perp_engine.result import RunResult
from perp_engine.run.export import export_run
from perp_engine.run.export_roots import export_roots
from perp_engine.store import RunStore

pytestmark = pytest.mark.usefixtures("perp_home")

MERGED = dict(method="wanda", mode="retrain", train=("norms",), adapter="masklora", rank=4, steps=3)


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.sqlite")


def finished_run(store, config, **options) -> int:
    run_id = store.create_run(config, **options)
    assert store.claim_next() == run_id
    assert execute_run(store, run_id) == "done", store.get_run(run_id).error
    return run_id


def reload_and_measure(folder, config: dict) -> tuple[float, float]:
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    windows = eval_windows(tokenizer, load_corpus(config["dataset"]).eval_text, config["seqlen"], config["eval_tokens"])
    masks = load_file(str(folder / "masks.safetensors"))
    for name, mask in masks.items():
        weight = model.get_submodule(name).weight
        assert torch.equal(weight != 0, mask), name  # zeros exactly where the masks say pruned
    return perplexity(model, windows, config["eval_batch_size"]), model_sparsity(model)["overall"]


@pytest.mark.parametrize("keep_model", [True, False], ids=["kept", "recomputed"])
def test_export_round_trip(store, tiny_model_dir, tiny_text_file, tmp_path, keep_model):
    run_id = finished_run(store, tiny_run_config(tiny_model_dir, tiny_text_file, **MERGED), keep_model=keep_model)
    row = store.get_run(run_id)
    dest = tmp_path / "export"
    exported = export_run(store, run_id, dest)
    assert exported.source == ("kept" if keep_model else "recomputed") and exported.mismatch is None
    assert exported.path == dest and exported.sparsity == pytest.approx(row.sparsity)

    ppl, sparsity = reload_and_measure(dest, row.config)
    assert ppl == pytest.approx(row.final_ppl, rel=1e-6)
    assert sparsity == pytest.approx(row.sparsity, abs=1e-9)

    assert json.loads((dest / "perp_config.json").read_text()) == row.config
    record = json.loads((dest / "perp_run.json").read_text())
    assert record["run_id"] == run_id and record["measured"]["final_ppl"] == pytest.approx(row.final_ppl, rel=1e-6)
    card = (dest / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers")
    assert f"| pruned + repaired | {row.final_ppl:.4f} |" in card and f"{row.sparsity:.4%}" in card
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export.export-")]  # staging cleaned up


def test_non_empty_folder_needs_force(store, tiny_model_dir, tiny_text_file, tmp_path, capsys):
    run_id = finished_run(store, tiny_run_config(tiny_model_dir, tiny_text_file, method="magnitude"), keep_model=True)
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("precious")
    (dest / "README.md").write_text("my readme")
    capsys.readouterr()
    assert main(["export", str(run_id), str(dest), "--store", str(store.path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("perp: error: dir: ") and "is not empty; pass --force" in err and err.count("\n") == 1
    assert (dest / "README.md").read_text() == "my readme" and sorted(p.name for p in dest.iterdir()) == ["README.md", "notes.txt"]

    assert main(["export", str(run_id), str(dest), "--force", "--store", str(store.path)]) == 0
    assert "copied the model kept with the run" in capsys.readouterr().out
    assert (dest / "notes.txt").read_text() == "precious"  # files export does not write are kept
    assert (dest / "README.md").read_text().startswith("---")
    assert (dest / "model.safetensors").is_file()


def test_failed_export_leaves_the_folder_alone(store, tiny_model_dir, tiny_text_file, tmp_path):
    run_id = finished_run(store, tiny_run_config(tiny_model_dir, tiny_text_file, method="magnitude"), keep_model=True)
    (store.artifact_dir(run_id) / "masks.safetensors").unlink()  # a damaged kept model
    dest = tmp_path / "out"
    with pytest.raises(PerpError, match="masks.safetensors is missing"):
        export_run(store, run_id, dest)
    assert not dest.exists() and [p.name for p in tmp_path.iterdir() if "export" in p.name] == []


def test_only_done_runs_export(store, tiny_model_dir, tiny_text_file, tmp_path):
    config = tiny_run_config(tiny_model_dir, tiny_text_file)
    done = store.create_run(config)
    store.start_run(done)
    store.record_result(done, RunResult(config=config.to_dict(), pruned_ppl=100.0))
    queued = store.create_run(config)
    with pytest.raises(PerpError, match=f"run: run {queued} is queued; only a done run can be exported"):
        export_run(store, queued, tmp_path / "out")
    with pytest.raises(PerpError, match="run: no run 99"):
        export_run(store, 99, tmp_path / "out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(PerpError, match="is a file"):
        export_run(store, done, tmp_path / "file")
    assert not (tmp_path / "out").exists() and (tmp_path / "file").read_text() == "x"


def test_the_app_exports_only_into_new_folders_inside_its_roots(store, tiny_model_dir, tiny_text_file, tmp_path):
    run_id = finished_run(store, tiny_run_config(tiny_model_dir, tiny_text_file, method="magnitude"), keep_model=True)
    root = tmp_path / "exports"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "link").parent.mkdir()
    (root / "link").symlink_to(outside)
    full = root / "full"
    full.mkdir()
    (full / "README.md").write_text("my readme")
    (full / "adapter").mkdir()
    for dest in (outside / "model", root / "link" / "model", root, tmp_path / "exports-other"):
        with pytest.raises(PerpError, match="^dir: .* is not inside an exports folder"):
            export_run(store, run_id, dest, roots=[root])
    with pytest.raises(PerpError, match=f"^dir: {full} is not empty; the app exports only into a new or empty folder$"):
        export_run(store, run_id, full, force=True, roots=[root])
    assert sorted(p.name for p in full.iterdir()) == ["README.md", "adapter"] and (full / "README.md").read_text() == "my readme"
    assert list(outside.iterdir()) == []

    exported = export_run(store, run_id, root / "runs" / "first", roots=[root])
    assert exported.path == root / "runs" / "first" and (exported.path / "masks.safetensors").is_file()


def test_export_roots_are_perp_home_exports_and_the_setting(monkeypatch, tmp_path, perp_home):
    monkeypatch.setenv("PERP_EXPORT_ROOTS", f"{tmp_path / 'a'}{os.pathsep}{os.pathsep}~/b")
    assert export_roots() == [perp_home / "exports", tmp_path / "a", Path("~/b").expanduser()]
    monkeypatch.delenv("PERP_EXPORT_ROOTS")
    assert export_roots() == [perp_home / "exports"]


def test_a_link_in_a_kept_model_is_never_followed_nor_copied(store, tiny_model_dir, tiny_text_file, tmp_path):
    run_id = finished_run(store, tiny_run_config(tiny_model_dir, tiny_text_file, method="magnitude"), keep_model=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for export")
    (store.artifact_dir(run_id) / "notes.txt").symlink_to(secret)
    dest = tmp_path / "out"
    with pytest.raises(PerpError, match=f"^run: run {run_id}'s kept model holds notes.txt, which is not a plain file "
                                        "or folder \\(a link\\?\\); refusing to copy it$"):
        export_run(store, run_id, dest)
    assert not dest.exists() and [p.name for p in tmp_path.iterdir() if "export" in p.name] == []


def test_a_stored_trust_remote_code_is_recomputed_only_with_the_flag(store, tiny_model_dir, tiny_text_file, tmp_path,
                                                                     capsys):
    run_id = finished_run(store, tiny_run_config(tiny_model_dir, tiny_text_file, method="magnitude"))
    config = dict(store.get_run(run_id).config, trust_remote_code=True)  # written into the store file by someone
    store._conn().execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(config), run_id))
    refusal = (f"trust_remote_code: run {run_id}'s stored config sets trust_remote_code, which runs Python code from "
               "the model's files; refused unless the command that runs it gives --trust-remote-code")
    with pytest.raises(PerpError) as err:
        export_run(store, run_id, tmp_path / "out")
    assert str(err.value) == refusal
    capsys.readouterr()
    assert main(["export", str(run_id), str(tmp_path / "out"), "--quiet", "--store", str(store.path)]) == 2
    assert capsys.readouterr().err == f"perp: error: {refusal}\n" and not (tmp_path / "out").exists()

    assert main(["export", str(run_id), str(tmp_path / "out"), "--quiet", "--trust-remote-code",
                 "--store", str(store.path)]) == 0
    assert "recomputed the run from its config" in capsys.readouterr().out
