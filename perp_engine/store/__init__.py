"""The persistent run store: every run with its config, status, progress, results, layers, curves and logs.

```python
from perp_engine.store import RunStore
store = RunStore()                      # $PERP_STORE or perp_home()/runs.sqlite
run_id = store.create_run(config)       # queued
store.list_runs(status="done")          # newest first
GalleryStore("docs/paper/store/runs.sqlite").get_run(3).ref   # "g3": a store opened read-only (the app's gallery)
```
"""

from .gallery import GalleryStore
from .rows import GALLERY_PREFIX, RunRow, run_ref, split_ref
from .run_store import RunStore, StoreError, default_store_path
from .schema import SCHEMA_VERSION, STATUSES

__all__ = ["GalleryStore", "GALLERY_PREFIX", "RunRow", "run_ref", "split_ref", "RunStore", "StoreError", "default_store_path", "SCHEMA_VERSION", "STATUSES"]
