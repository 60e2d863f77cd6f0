"""A recovered store never gives an id twice: new runs go on after the lost ones and after every kept-model folder,
so a new run never takes a lost run's id or its folder."""

import pytest
from damaged_store import damage_a_page, seeded_store

from perp_engine.config import RunConfig
from perp_engine.store import RunStore
from perp_engine.store.run_store import artifacts_folder
from perp_engine.store.salvage import recover_store


@pytest.mark.parametrize("folders, next_id", [((), 41), (("40", "57.partial", "notes"), 58)],
                         ids=["ids-given", "kept-model-folders"])
def test_a_recovered_store_never_gives_an_id_twice(tmp_path, folders, next_id):
    path = tmp_path / "runs.sqlite"
    seeded_store(path)  # runs 1-40
    damage_a_page(path, last=True)  # the newest runs are lost
    artifacts = artifacts_folder(path)
    for name in folders:
        (artifacts / name).mkdir(parents=True)
        (artifacts / name / "model.safetensors").write_text(f"kept by {name}")
    recovered = recover_store(path)
    assert recovered.kept["runs"] < 40  # rows of a page of garbage vanish (SQLite may read it without an error)

    store = RunStore(path)
    assert max(r.id for r in store.list_runs()) < 40  # the lost rows had the highest ids
    new = store.create_run(RunConfig(method="magnitude"))
    assert new == next_id and not store.artifact_dir(new).exists()
    assert store.create_sweep("after recovery", {"sparsity": [0.5]}, [new]) == 1  # a table that had no rows: from 1
    for name in folders:
        assert (artifacts / name / "model.safetensors").read_text() == f"kept by {name}"
