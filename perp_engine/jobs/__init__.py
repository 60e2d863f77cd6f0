"""Background jobs: runs execute in worker processes or on a Ray cluster behind a small executor interface.

```python
from perp_engine.jobs import LocalExecutor, make_executor
ex = LocalExecutor(max_parallel=2)      # default store
run_id = ex.submit(config)              # returns at once; a detached worker process runs it
ex.status(run_id)                       # JobStatus(status, stage, fraction, message, error)
ex.cancel(run_id)
ray_ex = make_executor("ray", address="auto")   # RayExecutor; this process drains progress into the store
```
"""

from .choose import EXECUTORS, make_executor
from .executor import Executor, JobStatus
from .local import LocalExecutor
from .tracking import RunCancelled, RunTracker

__all__ = ["EXECUTORS", "Executor", "JobStatus", "LocalExecutor", "RunCancelled", "RunTracker", "make_executor"]
