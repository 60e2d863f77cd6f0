"""Pre-run checks over tiny saved models of five families: limits come from each model (context, layer sizes),
texts are checked for what a run needs, nothing is recorded for a config that cannot run, and the checks stay
cheap (token counts are remembered on disk, the tokenizer is not loaded again)."""

from __future__ import annotations

import pytest
from fixtures_tiny import perp_home, save_tiny_model, tiny_model_dir, tiny_run_config, tiny_text, tiny_text_file  # noqa: F401

from perp_engine.errors import PerpError
from perp_engine.jobs import LocalExecutor
from perp_engine.run import preflight
from perp_engine.run.pipeline import run_pipeline
from perp_engine.run.preflight import Preflight, check_run, check_text

FAMILIES = ("llama", "mistral", "qwen2", "opt", "gpt2")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {family: save_tiny_model(root / family, family=family) for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_limits_come_from_each_model(family, model_dirs, tiny_text_file, perp_home):  # noqa: F811
    config = tiny_run_config(model_dirs[family], tiny_text_file)
    assert check_run(config) == []
    assert check_run(config.replace(pattern="2:4", sparsity=0.5)) == []
    cases = [
        (dict(seqlen=200, eval_tokens=200), "seqlen", "context of"),  # 128 positions (n_positions on GPT-2)
        (dict(pattern="3:7", sparsity=3 / 7), "pattern", "divisible by 7"),
        (dict(mode="retrain", adapter="masklora", rank=33), "rank", "exceeds min(in, out) = 32"),
        (dict(mode="retrain", adapter="lora", target_modules=("no_such_proj",)), "target_modules", "present:"),
        (dict(calib_samples=10_000), "calib_samples", "use at most"),
    ]
    for changes, field, fragment in cases:
        with pytest.raises(PerpError) as err:
            check_run(config.replace(**changes))
        assert err.value.field == field and fragment in err.value.message, (changes, str(err.value))
        assert "\n" not in str(err.value)


def test_eval_tokens_above_the_text_are_used_as_far_as_they_go_and_said(tiny_model_dir, tiny_text_file, perp_home):  # noqa: F811
    config = tiny_run_config(tiny_model_dir, tiny_text_file, eval_tokens=1_000_000, method="magnitude")
    [warning] = check_run(config)
    assert warning.startswith("eval_tokens: 1,000,000 asked, but the evaluation text of")
    result = run_pipeline(config)
    assert warning in result.warnings
    assert 0 < result.eval_tokens < 1_000_000 and result.eval_tokens % config.seqlen == 0
    assert f"uses those {result.eval_tokens:,} tokens" in warning
    assert run_pipeline(config.replace(eval_tokens=64)).eval_tokens == 64


@pytest.mark.parametrize("content, fragment", [
    (bytes(range(256)), "is not UTF-8 text"),
    (b"", "is empty"),
    (b"A text of 28 bytes, no more.", "has a single paragraph"),
    (b"Two paragraphs.\n\nBoth short.", "longer text"),
    (None, None),
])
def test_check_text_for_an_upload(content, fragment, tmp_path, tiny_model_dir, tiny_text_file, perp_home):  # noqa: F811
    path = tmp_path / "upload.txt"
    path.write_bytes(tiny_text().encode() if content is None else content)
    config = tiny_run_config(tiny_model_dir, tiny_text_file)
    if fragment is None:
        assert check_text(path) == [] and check_text(path, config) == []
        return
    with pytest.raises(PerpError) as err:
        check_text(path, config)
    assert fragment in err.value.message and "\n" not in str(err.value)


def test_token_counts_are_remembered_and_an_edited_text_is_counted_again(tmp_path, tiny_model_dir, perp_home,  # noqa: F811
                                                                         monkeypatch):
    text = tmp_path / "text.txt"
    text.write_text(tiny_text(20))
    config = tiny_run_config(tiny_model_dir, text, calib_samples=40)
    check_run(config)
    monkeypatch.setattr(preflight, "load_tokenizer", lambda *a, **k: pytest.fail("the tokenizer was loaded again"))
    assert Preflight().check(config) == []  # a new checker, the counts come from disk
    text.write_text(tiny_text(8))
    monkeypatch.undo()
    with pytest.raises(PerpError, match="calib_samples: 40 windows of 16 tokens are more than"):
        check_run(config)


def test_a_hub_corpus_that_cannot_be_downloaded_is_refused(tiny_model_dir, tiny_text_file, perp_home, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PerpError, match="dataset: c4 needs internet the first time"):
        check_run(tiny_run_config(tiny_model_dir, tiny_text_file, calib_dataset="c4"))


def test_submit_checks_before_recording(tmp_path, tiny_model_dir, tiny_text_file, perp_home, monkeypatch):  # noqa: F811
    monkeypatch.setattr(LocalExecutor, "ensure_workers", lambda self: [])
    executor = LocalExecutor(tmp_path / "runs.sqlite")
    with pytest.raises(PerpError, match="seqlen: 200 is beyond the context"):
        executor.submit(tiny_run_config(tiny_model_dir, tiny_text_file, seqlen=200, eval_tokens=200))
    assert executor.store.list_runs() == []
    run_id = executor.submit(tiny_run_config(tiny_model_dir, tiny_text_file))
    assert [r.id for r in executor.store.list_runs()] == [run_id]
