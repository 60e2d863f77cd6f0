"""What the offline zero-shot data holds: the number of docs in each task's scored split (as lm-eval's splits)."""

SPLIT_DOCS = {"boolq": 3270, "rte": 277, "hellaswag": 10042, "winogrande": 1267, "arc_easy": 2376,
              "arc_challenge": 1172, "openbookqa": 500}
