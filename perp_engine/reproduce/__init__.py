"""The paper, reproduced: a fixed set of runs that tests PERP's three claims, queued through the run store and
an executor, then a report with one table, one figure and one verdict per claim.

```python
from perp_engine.reproduce import paper_set, queue_set, latest_rows, assemble, write_report
runset = paper_set()                                  # the embedded model, FULL_SIZES (quick_set(): tiny model)
queued = queue_set(runset, executor, executor.store)  # reuses finished runs, submits the rest
executor.wait(queued.run_ids.values())
report = write_report(assemble(runset, latest_rows(executor.store, runset)), "docs/paper")
```

``perp reproduce`` (perp_engine/cli/reproduce_cmd.py) does exactly this; the app's Paper page shows the report.
"""

from .decisions import FAILS, HOLDS, PARTLY, UNDECIDED, UNMEASURED, VERDICTS
from .queue import Queued, breakdowns, latest_rows, queue_set, set_seconds
from .report import assemble, claims_of, load_report, markdown, readme_section, run_numbers, write_report
from .runset import FULL_SIZES, QUICK_SIZES, Planned, RunSet, paper_set, quick_set
from .wording import Claim, analyse

__all__ = ["FAILS", "FULL_SIZES", "HOLDS", "PARTLY", "Planned", "QUICK_SIZES", "Queued", "RunSet", "UNDECIDED", "UNMEASURED",
           "VERDICTS", "Claim", "analyse", "assemble", "breakdowns", "claims_of", "latest_rows", "load_report",
           "markdown", "paper_set", "queue_set", "quick_set", "readme_section", "run_numbers", "set_seconds",
           "write_report"]
