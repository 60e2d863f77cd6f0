"""The gallery store: opened read-only (SQLite never writes, locks or journals it; every write the store offers
is refused before SQLite is asked), its rows marked and referenced as g<id>, an older schema migrated in memory
only; and the gallery shipped with the project holds the reproduction and the methods table's runs."""

from __future__ import annotations

import hashlib
import importlib.util
import sqlite3
from pathlib import Path

import pytest
from app_fixtures import layer_store

from perp_engine.config import RunConfig
from perp_engine.errors import PerpError
from perp_engine.result import RunResult
from perp_engine.store import SCHEMA_VERSION, GalleryStore, RunStore, StoreError, run_ref, split_ref
from perp_engine.store.schema import migrate, schema_version

ROOT = Path(__file__).resolve().parents[2]


def build_gallery_script():
    spec = importlib.util.spec_from_file_location("build_gallery", ROOT / "scripts" / "build_gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def gallery(tmp_path) -> tuple[Path, dict[str, int]]:
    """A gallery file as scripts/build_gallery.py writes it, from a store of made-up runs with layer records."""
    ids = layer_store(tmp_path / "work.sqlite")
    path = tmp_path / "shelf" / "gallery.sqlite"
    path.parent.mkdir()
    build_gallery_script().write_gallery(RunStore(tmp_path / "work.sqlite"), path)
    return path, ids


def test_references_name_a_users_run_or_a_gallery_run():
    assert split_ref("g12") == (True, 12) and split_ref("G12") == (True, 12)
    assert split_ref("12") == split_ref("#12") == split_ref(12) == (False, 12)
    assert run_ref(True, 12) == "g12" and run_ref(False, 12) == "12"
    for bad in ("g", "x12", "g0", "0", "12g", "", "²"):
        with pytest.raises(PerpError, match="run: .* is not a run"):
            split_ref(bad)


def test_the_written_gallery_is_one_compact_file_in_rollback_journal_mode(gallery):
    path, ids = gallery
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert path.read_bytes()[18:20] == b"\x01\x01"  # format versions 1: a rollback journal, not WAL (2)
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    assert schema_version(conn) == SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == len(ids)
    conn.close()


def test_reading_the_gallery_changes_no_byte_and_leaves_no_file_beside_it(gallery):
    path, ids = gallery
    before = digest(path)
    store = GalleryStore(path)
    rows = store.list_runs()
    assert {r.id for r in rows} == set(ids.values()) and all(r.gallery for r in rows)
    assert {r.ref for r in rows} == {f"g{i}" for i in ids.values()}
    run = store.get_run(ids["new"])
    assert run.gallery and run.ref == f"g{ids['new']}" and run.status == "done"
    assert store.layers(run.id) and store.blocks(run.id) and store.logs(run.id)
    assert store.latest_with_config(RunConfig.create("perp")).gallery
    store.close()
    assert digest(path) == before and [p.name for p in path.parent.iterdir()] == [path.name]


def test_every_write_is_refused_and_the_file_stays_as_it_was(gallery):
    path, ids = gallery
    before = digest(path)
    store = GalleryStore(path)
    run_id = ids["new"]
    writes = [lambda: store.create_run(RunConfig()), lambda: store.rename_run(run_id, "mine"),
              lambda: store.set_tags(run_id, ["mine"]), lambda: store.delete_run(run_id),
              lambda: store.request_cancel(run_id), lambda: store.log(run_id, "a line"),
              lambda: store.record_result(run_id, RunResult(config=RunConfig().to_dict())),
              lambda: store.create_sweep("mine", {}), lambda: store.claim_next()]
    for write in writes:
        with pytest.raises(StoreError, match="is the gallery, opened read-only"):
            write()
    assert store.recover() == [] and store.get_run(run_id).name is None
    assert digest(path) == before


def test_sqlite_itself_cannot_write_through_the_gallerys_connection(gallery):
    path, ids = gallery
    before = digest(path)
    store = GalleryStore(path)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store._conn().execute("UPDATE runs SET name = 'x'")
    assert digest(path) == before


def test_a_gallery_of_an_older_schema_is_migrated_in_memory_only(tmp_path):
    path = tmp_path / "v5.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=5)
    conn.execute("INSERT INTO runs (status, config, config_key, model, method, created_at, final_ppl)"
                 " VALUES ('done', ?, 'old key', 'tiny', 'wanda', 1.0, 21.0)", (RunConfig().to_json(),))
    conn.close()
    before = digest(path)
    store = GalleryStore(path)
    assert store.schema_version == SCHEMA_VERSION
    assert store.latest_with_config(RunConfig()).ref == "g1"  # migration 6 re-keyed it
    assert digest(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["v5.sqlite"]


def test_a_missing_file_or_another_programs_database_is_one_line(tmp_path):
    with pytest.raises(StoreError, match="no gallery store there"):
        GalleryStore(tmp_path / "nowhere.sqlite")
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(StoreError, match="another program"):
        GalleryStore(other)


def test_the_shipped_gallery_holds_the_reproduction_and_the_methods_table():
    from app.paper_view import SHIPPED, read_shipped, runset_of
    from app.run_sources import GALLERY
    from perp_engine.jobs.local import portable_config
    from perp_engine.reproduce import latest_rows

    script = build_gallery_script()
    assert GALLERY.read_bytes()[18:20] == b"\x01\x01"
    store = GalleryStore(GALLERY)
    assert schema_version(store._conn()) == SCHEMA_VERSION  # on disk, not migrated in memory
    paper = runset_of(read_shipped(SHIPPED)[0])
    shipped = latest_rows(store, paper)
    assert all(row is not None and row.status == "done" for row in shipped.values())
    assert all(script.PAPER_TAG in row.tags for row in shipped.values())
    for key, config in script.methods_plan(paper).items():
        row = store.latest_with_config(portable_config(config))
        assert row is not None and row.status == "done", key
        assert script.METHODS_TAG in row.tags and row.config["preset"] == "none"
        assert all(layer["recon_error"] is not None for layer in store.layers(row.id)), key
        assert {k: row.config[k] for k in ("seqlen", "calib_samples", "eval_tokens")} == \
               {k: paper.sizes[k] for k in ("seqlen", "calib_samples", "eval_tokens")}
