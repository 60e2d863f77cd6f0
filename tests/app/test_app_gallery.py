"""The gallery beside the user's store, through Streamlit's AppTest: with an empty store, Compare, Layers, Run
(?run=g<id>) and Paper show the shipped runs, and rendering them changes no byte of the gallery; gallery runs and
the user's runs of the same number stay apart (g1 vs 1), a gallery run offers no write, and a gallery run loaded
into Experiment launches into the user's store, never into the gallery."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest
from app_fixtures import TINY, layer_store, made_up, record
from fixtures_tiny import tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)
from test_app_pages import open_page, texts

from app.run_sources import GALLERY, GALLERY_ENV, gallery_path
from perp_engine.config import RunConfig
from perp_engine.jobs import LocalExecutor
from perp_engine.store import GalleryStore, RunStore

ROOT = Path(__file__).resolve().parents[2]
WRITES = ("Save name and tags", "Export", "Delete this run…")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_gallery(work: Path, path: Path) -> Path:
    spec = importlib.util.spec_from_file_location("build_gallery", ROOT / "scripts" / "build_gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_gallery(RunStore(work), path)
    return path


@pytest.fixture
def shipped(monkeypatch) -> str:
    """The gallery shipped with the project, on (as for a user: PERP_GALLERY unset); its digest."""
    monkeypatch.delenv(GALLERY_ENV, raising=False)
    return digest(GALLERY)


@pytest.fixture
def small(tmp_path, monkeypatch) -> Path:
    """A gallery of made-up runs 1-3 (layer records included), and a user store holding runs 1-3 too."""
    layer_store(tmp_path / "work.sqlite")
    path = write_gallery(tmp_path / "work.sqlite", tmp_path / "gallery.sqlite")
    layer_store(tmp_path / "runs.sqlite")
    monkeypatch.setenv(GALLERY_ENV, str(path))
    return path


def wanda_50(store: GalleryStore) -> int:
    return next(r.id for r in store.list_runs(status="done", method="wanda")
                if r.config["preset"] == "none" and r.config["pattern"] == "unstructured"
                and r.config.get("allocation", "uniform") == "uniform")


def test_an_empty_store_shows_the_gallery_on_compare_layers_and_run(shipped, tmp_path, monkeypatch):
    gallery = GalleryStore(GALLERY)
    done = gallery.list_runs(status="done")
    at = open_page("compare", tmp_path / "runs.sqlite", monkeypatch)
    table = at.dataframe[0].value
    assert set(table["id"]) == {r.id for r in done} and table["gallery"].all()
    assert any(f"Gallery (read-only, runs g1, g2, …): `{GALLERY}`" == c.value for c in at.sidebar.caption)
    assert at.get("plotly_chart") and "No runs yet" not in texts(at, "info")

    at = open_page("layers", tmp_path / "runs.sqlite", monkeypatch)
    assert at.get("plotly_chart") and at.multiselect(key="layers_runs").value == [done[0].ref]

    run_id = wanda_50(gallery)
    at = open_page("run", tmp_path / "runs.sqlite", monkeypatch, query={"run": f"g{run_id}"})
    assert at.title[0].value.startswith(f"Run #g{run_id}") and "A gallery run" in texts(at, "info")
    assert not [b for b in at.button if b.label in WRITES]
    assert any(len(frame.value) == 210 for frame in at.dataframe)  # its per-layer records (30 blocks x 7)
    assert RunStore(tmp_path / "runs.sqlite").list_runs() == []
    assert digest(GALLERY) == shipped


@pytest.mark.parametrize("report", ["shipped", "missing"])
def test_the_paper_page_links_the_gallerys_runs_and_reads_them_without_a_report(report, shipped, tmp_path,
                                                                                 monkeypatch):
    if report == "missing":
        monkeypatch.setenv("PERP_PAPER_REPORT", str(tmp_path / "missing.json"))
    at = open_page("paper", tmp_path / "runs.sqlite", monkeypatch)
    verdicts = [str(e.value) for kind in ("success", "warning", "error", "info") for e in at.get(kind)]
    assert sum(v.startswith("**Shipped results: ") for v in verdicts) == 3  # one verdict per claim
    links = [c.value for c in at.caption if "Its runs in the gallery" in c.value]
    assert len(links) == 3 and all("](run?run=g" in c for c in links)
    assert digest(GALLERY) == shipped


def test_gallery_runs_and_the_users_runs_of_the_same_number_stay_apart(small, tmp_path, monkeypatch):
    at = open_page("compare", tmp_path / "runs.sqlite", monkeypatch)
    table = at.dataframe[0].value
    assert sorted(zip(table["gallery"], table["id"])) == [(False, 1), (False, 2), (False, 3), (True, 1), (True, 2),
                                                          (True, 3)]
    at.multiselect(key="cmp_source").set_value(["gallery"]).run()
    assert at.dataframe[0].value["gallery"].all() and len(at.dataframe[0].value) == 3

    at = open_page("compare", tmp_path / "runs.sqlite", monkeypatch, selected_runs=["g1"])
    bars = [c for c in at.get("plotly_chart") if '"barmode":"group"' in c.proto.spec][0].proto.spec
    assert "#g1 " in bars and "#1 " not in bars

    mine = open_page("run", tmp_path / "runs.sqlite", monkeypatch, query={"run": "1"})
    assert mine.title[0].value.startswith("Run #1") and {b.label for b in mine.button} >= set(WRITES[:2])
    theirs = open_page("run", tmp_path / "runs.sqlite", monkeypatch, query={"run": "g1"})
    assert theirs.title[0].value.startswith("Run #g1") and not [b for b in theirs.button if b.label in WRITES]

    at = open_page("layers", tmp_path / "runs.sqlite", monkeypatch, query={"run": ["g2", "2"]})
    assert at.multiselect(key="layers_runs").value == ["g2", "2"] and at.get("plotly_chart")


def test_a_gallery_run_loaded_into_experiment_launches_into_the_users_store(
        tmp_path, monkeypatch, tiny_model_dir, tiny_text_file):  # noqa: F811
    config = RunConfig.create("none", model=str(tiny_model_dir), dataset=str(tiny_text_file), method="magnitude",
                              sparsity=0.3, **TINY)
    record(RunStore(tmp_path / "work.sqlite"), config, made_up(config, 30.0, 60.0))
    path = write_gallery(tmp_path / "work.sqlite", tmp_path / "gallery.sqlite")
    before = digest(path)
    monkeypatch.setenv(GALLERY_ENV, str(path))
    monkeypatch.setenv("PERP_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(LocalExecutor, "ensure_workers", lambda self: [])
    at = open_page("experiment", tmp_path / "runs.sqlite", monkeypatch, query={"from": "g1"})
    assert "settings of run #g1" in texts(at, "caption")
    next(b for b in at.button if b.label == "Launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    [queued] = RunStore(tmp_path / "runs.sqlite").list_runs()
    assert not queued.gallery
    assert {k: queued.config[k] for k in ("model", "dataset", "method", "sparsity", "seqlen")} == \
           {k: config.to_dict()[k] for k in ("model", "dataset", "method", "sparsity", "seqlen")}
    assert [r.id for r in GalleryStore(path).list_runs()] == [1] and digest(path) == before


@pytest.mark.parametrize("preset", ["none", "perp", "full-ft"])  # none: its steps (3) are not the form's, nor read
def test_settings_of_a_gallery_run_offer_it_and_may_still_be_launched(
        preset, tmp_path, monkeypatch, tiny_model_dir, tiny_text_file):  # noqa: F811
    """Settings identical to a gallery run point to it (its numbers are there already) without refusing Launch: its
    copy lands in the user's store, which then holds the twin the form offers instead."""
    config = RunConfig.create(preset, model=str(tiny_model_dir), dataset=str(tiny_text_file), method="wanda",
                              sparsity=0.5, **TINY)
    record(RunStore(tmp_path / "work.sqlite"), config, made_up(config, 30.0, 60.0, 40.0))
    monkeypatch.setenv(GALLERY_ENV, str(write_gallery(tmp_path / "work.sqlite", tmp_path / "gallery.sqlite")))
    monkeypatch.setattr(LocalExecutor, "ensure_workers", lambda self: [])
    at = open_page("experiment", tmp_path / "runs.sqlite", monkeypatch, query={"from": "g1"})
    launch = next(b for b in at.button if b.label == "Launch")
    assert "Identical to gallery run #g1" in texts(at, "info") and not launch.disabled
    assert any(link.proto.query_string == "run=g1" and link.proto.label == "Open run #g1"
               for link in at.get("page_link"))
    launch.click().run()
    [queued] = RunStore(tmp_path / "runs.sqlite").list_runs()
    assert f"Identical to run #{queued.id}** (queued)" in texts(at, "info")
    assert "gallery run" not in texts(at, "info") and next(b for b in at.button if b.label == "Launch").disabled
    at.number_input(key="exp_seed").set_value(1).run()  # other settings: no twin in either store
    assert "Identical" not in texts(at, "info") and not next(b for b in at.button if b.label == "Launch").disabled


def test_the_gallery_is_hidden_by_off_refused_when_missing_and_never_the_users_own_store(tmp_path, monkeypatch):
    own = tmp_path / "runs.sqlite"
    monkeypatch.setenv(GALLERY_ENV, "off")
    assert gallery_path(own) is None
    monkeypatch.setenv(GALLERY_ENV, str(own))
    RunStore(own).close()
    assert gallery_path(own) is None  # PERP_STORE pointing at the gallery: its runs are the user's, shown once
    monkeypatch.setenv(GALLERY_ENV, str(tmp_path / "nowhere.sqlite"))
    at = open_page("compare", own, monkeypatch)
    [error] = at.error
    assert error.value.startswith(f"{GALLERY_ENV}: {tmp_path / 'nowhere.sqlite'} is not a file")
