"""One run from a RunConfig to a RunResult, and what surrounds it.

- ``preflight``: every check of a config that needs no weights, before the run is recorded
- ``pipeline``: ``run_pipeline(config, ...)``: load, data, dense eval, prune, pruned eval, repair, final eval, and
  zero-shot accuracy of the models the config scores
- ``cache``: the artifact cache (dense perplexity, pruned weights, layer errors) keyed by what produced them
- ``save`` / ``export``: the final model in Hugging Face format with its masks; export of a stored run
- ``export_roots``: the folders the app may export into; ``trust``: trust_remote_code only when the command gives it
- ``sweep``: a grid of configs expanded into runs
"""
