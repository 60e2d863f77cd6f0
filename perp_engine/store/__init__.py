"""The persistent run store: every run with its config, status, progress, results, layers, curves and logs.

```python
from perp_engine.store import RunStore
store = RunStore()                      # $PERP_STORE or perp_home()/runs.sqlite
run_id = store.create_run(config)       # queued
store.list_runs(status="done")          # newest first
```
"""

from .rows import RunRow
from .run_store import RunStore, StoreError, default_store_path
from .schema import SCHEMA_VERSION, STATUSES

__all__ = ["RunRow", "RunStore", "StoreError", "default_store_path", "SCHEMA_VERSION", "STATUSES"]
