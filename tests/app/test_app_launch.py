"""Experiment launches only what can run (issue 15) and exactly what it shows (issue 30): whenever the pre-run checks
fail, for a value typed into any field too, Launch is disabled and the page says why and which input to change; an
identical queued, running or finished run is offered instead of a copy; the runs listed are this browser's and
survive a reload; an N:M pattern shows its fixed sparsity; a damaged store is one line, not a traceback."""

from __future__ import annotations

import pytest
import streamlit.runtime.context as st_context
from app_fixtures import made_up, record
from damaged_store import damage_a_page, seeded_store
from fixtures_tiny import tiny_model_dir, tiny_text, tiny_text_file  # noqa: F401  (pytest fixtures)
from test_app_pages import no_workers, open_page, texts  # noqa: F401  (no_workers: a pytest fixture)

from app import forms, launches
from app.state import BROWSER
from perp_engine.config import RunConfig
from perp_engine.store import RunStore


def launch(at):
    return next(b for b in at.button if b.label == "Launch")


@pytest.mark.parametrize("case, session, field, fragment", [
    ("no such folder", {"exp_model": "/no/such/model/folder"}, "model", "not a built-in model"),
    ("Hub id offline", {"exp_model": "some-org/some-model"}, "model", "offline mode is on"),
    ("rank above a layer", {"exp_model": "{model}", "exp_dataset": "{text}", "exp_seqlen": 16, "exp_recipe": "custom",
                            "exp_adapter": "masklora", "exp_rank": 256}, "rank", "exceeds min(in, out) = 32"),
    ("28-byte upload", {"exp_dataset": "{upload}"}, "dataset", "has a single paragraph"),
    ("upload too short for a window", {"exp_model": "{model}", "exp_dataset": "{short}", "exp_seqlen": 16}, "seqlen",
     "longer text"),
])
def test_launch_is_disabled_with_the_reason(case, session, field, fragment, tmp_path, monkeypatch, tiny_model_dir,  # noqa: F811
                                            tiny_text_file):  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PERP_HOME", str(tmp_path / "home"))
    (tmp_path / "upload.txt").write_bytes(b"A text of 28 bytes, no more.")
    (tmp_path / "short.txt").write_text(f"{tiny_text(1)}\n\nEnd.")
    files = {"model": str(tiny_model_dir), "text": str(tiny_text_file), "upload": str(tmp_path / "upload.txt"),
             "short": str(tmp_path / "short.txt")}
    session = {k: v.format(**files) if isinstance(v, str) else v for k, v in session.items()}
    store = tmp_path / "runs.sqlite"
    at = open_page("experiment", store, monkeypatch, **session)
    [error] = [e for e in at.error if str(e.value).startswith(f"{field}: ")]
    assert fragment in error.value and "\n" not in error.value
    assert forms.field_hint(field) in texts(at, "caption")  # which input to change
    assert launch(at).disabled and fragment in launch(at).help
    assert not at.metric  # no estimate for a run that cannot start
    assert RunStore(store).list_runs() == []


TINY_FORM = {"exp_seqlen": 16, "exp_eval_tokens": 64, "exp_calib": 2}


@pytest.fixture
def tiny_form(tmp_path, tiny_model_dir, tiny_text_file):  # noqa: F811
    """The Experiment form's session values for a runnable config of the tiny model."""
    return {"exp_model": str(tiny_model_dir), "exp_dataset": str(tiny_text_file), **TINY_FORM}


@pytest.mark.parametrize("typed, field, value, fragment", [
    ({"exp_eval_tokens": 20_000, "exp_seqlen": 10_000}, "seqlen", 10_000, "is beyond the context"),  # old max 8192
    ({"exp_seqlen": 10_000}, "eval_tokens", TINY_FORM["exp_eval_tokens"], "at least one window of seqlen=10000"),
    ({"exp_rank": 100_000}, "rank", 100_000, "exceeds min(in, out) = 32"),  # beyond the old widget's 256
    ({"exp_batch": 0}, "batch_size", 0, "use an integer >= 1"),
    ({"exp_lr_custom": 1.5}, "lr", 1.5, "use a learning rate in (0, 1)"),
    ({"exp_steps": -3}, "steps", -3, "use an integer >= 1"),
])
def test_a_typed_value_out_of_range_disables_launch_and_names_the_field(typed, field, value, fragment, tmp_path,
                                                                        monkeypatch, no_workers, tiny_form):  # noqa: F811
    """What the user types reaches the checks, whatever the value (a bounded widget would keep the previous value
    silently and Launch would queue that)."""
    store = tmp_path / "runs.sqlite"
    at = open_page("experiment", store, monkeypatch, **tiny_form, exp_recipe="custom", exp_adapter="masklora")
    assert not at.error and not launch(at).disabled
    for key, typed_value in typed.items():
        at.number_input(key=key).set_value(typed_value)
    at.run()
    [error] = [str(e.value) for e in at.error]
    assert error.startswith(f"{field}: {value}") and fragment in error
    assert forms.field_hint(field) in texts(at, "caption")
    assert launch(at).disabled and error in launch(at).help
    assert RunStore(store).list_runs() == []


def test_an_identical_run_is_offered_instead_of_a_copy(tmp_path, monkeypatch, no_workers, tiny_form):  # noqa: F811
    store_path = tmp_path / "runs.sqlite"
    at = open_page("experiment", store_path, monkeypatch, **tiny_form)
    launch(at).click().run()
    (queued,) = RunStore(store_path).list_runs()
    offer = f"Identical to run #{queued.id}"
    assert offer in texts(at, "info") and "(queued)" in texts(at, "info")
    assert launch(at).disabled and f"identical to run #{queued.id}" in launch(at).help
    assert any(link.proto.query_string == f"run={queued.id}" and link.proto.label == f"Open run #{queued.id}"
               for link in at.get("page_link"))

    at.number_input(key="exp_seed").set_value(1).run()  # another config: no offer
    assert offer not in texts(at, "info") and not launch(at).disabled
    at.number_input(key="exp_seed").set_value(0).run()
    assert offer in texts(at, "info")

    with RunStore(store_path) as store:
        store.start_run(queued.id)
        store.fail_run(queued.id, "boom")
    at.run()
    assert offer not in texts(at, "info") and not launch(at).disabled  # a failed run may be launched again
    launch(at).click().run()
    relaunched = RunStore(store_path).list_runs()[0]
    assert relaunched.id != queued.id and relaunched.config == queued.config


def test_a_finished_identical_run_is_offered(tmp_path, monkeypatch, no_workers, tiny_form):  # noqa: F811
    store_path = tmp_path / "runs.sqlite"
    config = forms.ExperimentForm(model=tiny_form["exp_model"], dataset=tiny_form["exp_dataset"],
                                  advanced={"seqlen": 16, "eval_tokens": 64, "calib_samples": 2}).to_config()
    with RunStore(store_path) as store:
        done = record(store, config, made_up(config, 10.0, 20.0, 15.0))
        cancelled = store.create_run(config.replace(seed=1))
        store.mark_cancelled(cancelled)
    at = open_page("experiment", store_path, monkeypatch, **tiny_form)
    assert f"Identical to run #{done}** (done)" in texts(at, "info") and launch(at).disabled
    at.number_input(key="exp_seed").set_value(1).run()  # identical to a cancelled run: it may run again
    assert "Identical to run" not in texts(at, "info") and not launch(at).disabled


def browser_sends(monkeypatch, cookies: dict) -> None:
    """As if the browser's request carried these cookies (AppTest sends none)."""
    monkeypatch.setattr(st_context.ContextProxy, "cookies", property(lambda self: st_context.StreamlitCookies(cookies)))


def cookie_scripts(at) -> list[str]:
    return [e.proto.body for e in at.get("html") if launches.COOKIE in e.proto.body]


def test_the_runs_launched_from_this_browser_survive_a_reload(tmp_path, monkeypatch, no_workers, tiny_form):  # noqa: F811
    store_path = tmp_path / "runs.sqlite"
    with RunStore(store_path) as store:  # a run from elsewhere (the command line), newer than nothing of ours
        other = store.create_run(RunConfig.create("none", model=tiny_form["exp_model"], seqlen=16))
    at = open_page("experiment", store_path, monkeypatch, **tiny_form)
    browser = at.session_state[BROWSER]
    assert launches.valid_id(browser)
    [script] = cookie_scripts(at)  # a new browser gets its id in a cookie
    assert f"{launches.COOKIE}={browser};" in script
    assert "1 other run(s) queued or running" in texts(at, "caption")
    launch(at).click().run()
    mine = RunStore(store_path).list_runs()[0].id
    assert launches.launched(store_path, browser) == [mine]

    browser_sends(monkeypatch, {launches.COOKIE: browser})
    reloaded = open_page("experiment", store_path, monkeypatch)  # a new session of the same browser
    links = {link.proto.query_string for link in reloaded.get("page_link")}
    assert f"run={mine}" in links and f"run={other}" not in links
    assert any(b.key == f"cancel-{mine}" for b in reloaded.button) and not cookie_scripts(reloaded)

    browser_sends(monkeypatch, {launches.COOKIE: "../../not-an-id"})  # another browser, or an edited cookie
    stranger = open_page("experiment", store_path, monkeypatch)
    assert stranger.session_state[BROWSER] != browser and launches.valid_id(stranger.session_state[BROWSER])
    assert not any(b.key == f"cancel-{mine}" for b in stranger.button)
    assert "2 other run(s) queued or running" in texts(stranger, "caption")


def test_a_long_list_shows_the_newest_as_cards_and_links_to_the_rest(tmp_path, monkeypatch, tiny_form):
    store_path = tmp_path / "runs.sqlite"
    browser = launches.new_id()
    with RunStore(store_path) as store:
        ids = []
        for seed in range(6):
            config = RunConfig.create("none", model=tiny_form["exp_model"], seed=seed)
            ids.append(record(store, config, made_up(config, 10.0, 20.0)))
            launches.record(store_path, browser, ids[-1])
        store.delete_run(ids[0])
    at = open_page("experiment", store_path, monkeypatch, **{BROWSER: browser})
    links = [link.proto for link in at.get("page_link")]
    cards = {link.query_string for link in links if link.label.startswith("Run #")}
    assert cards == {f"run={i}" for i in ids[-3:]}  # the newest three
    assert [link.label for link in links if link.label.startswith("#")] == [f"#{i} · done" for i in (ids[2], ids[1])]
    assert "Earlier from this browser (2):" in texts(at, "caption")  # the deleted run is skipped
    assert any(link.label == "Every run: Compare" for link in links)


def test_a_runnable_choice_keeps_launch_enabled(tmp_path, monkeypatch, tiny_model_dir, tiny_text_file):  # noqa: F811
    at = open_page("experiment", tmp_path / "runs.sqlite", monkeypatch, exp_model=str(tiny_model_dir),
                   exp_dataset=str(tiny_text_file), exp_seqlen=16)
    assert not at.error and not launch(at).disabled


def test_an_nm_pattern_shows_its_sparsity(tmp_path, monkeypatch):
    at = open_page("experiment", tmp_path / "runs.sqlite", monkeypatch)
    at.slider(key="exp_sparsity").set_value(0.7)
    at.segmented_control(key="exp_pattern").set_value("2:4").run()
    fixed = at.slider(key="exp_sparsity_2:4")
    assert fixed.value == 0.5 and fixed.disabled
    assert "2:4 prunes exactly 50% of the weights." in texts(at, "caption")
    at.segmented_control(key="exp_pattern").set_value("unstructured").run()
    assert at.slider(key="exp_sparsity").value == 0.7 and not at.slider(key="exp_sparsity").disabled


def test_a_damaged_store_is_one_line_in_the_page(tmp_path, monkeypatch):
    path = tmp_path / "runs.sqlite"
    seeded_store(path)
    damage_a_page(path)
    monkeypatch.setenv("PERP_STORE", str(path))
    from streamlit.testing.v1 import AppTest
    from test_app_pages import MAIN, TIMEOUT

    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT).run()
    assert not at.exception
    [error] = at.error
    assert error.value.startswith(f"store: {path} is damaged") and f"perp store recover --store {path}" in error.value
