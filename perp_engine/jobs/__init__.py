"""Background jobs: runs execute in worker processes behind a small executor interface.

```python
from perp_engine.jobs import LocalExecutor
ex = LocalExecutor(max_parallel=2)      # default store
run_id = ex.submit(config)              # returns at once; a detached worker process runs it
ex.status(run_id)                       # JobStatus(status, stage, fraction, message, error)
ex.cancel(run_id)
```
"""

from .executor import Executor, JobStatus
from .local import LocalExecutor
from .tracking import RunCancelled, RunTracker

__all__ = ["Executor", "JobStatus", "LocalExecutor", "RunCancelled", "RunTracker"]
