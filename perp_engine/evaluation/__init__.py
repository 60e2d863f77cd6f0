"""How good a model is and how far pruning moved it: numbers measured on held-out text, never on training windows.

- ``perplexity``: the WikiText-protocol perplexity
- ``sparsity``: the measured share of zero weights, per decoder linear and overall
- ``layer_errors``: the local and drift (accumulated) errors of every linear and block against the dense model
- ``relative_error``: ||reference - value||^2 / ||reference||^2, as a loss and summed over chunks
- ``recovery``: the share of the pruning damage a repair undid (log-perplexity scale)
- ``divergence``: when a repair made the model far worse, the run is diverged
- ``zero_shot``: accuracy on the pruning papers' zero-shot tasks through lm-eval, on the model in hand
- ``zero_shot_table``: a run's zero-shot scores per task and their mean, and the protocol that makes runs comparable
"""
