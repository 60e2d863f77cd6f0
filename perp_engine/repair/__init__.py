"""Repairing a pruned model: which parameters train, the adapters that keep sparsity, and the one training loop.

- ``stage``: the repair stage of a run: retrain (the causal-LM loss, whole model) or reconstruct (block by block)
- ``training_loop``: AdamW, schedule, master copies, clipping, mask keeping, the non-finite guard with rollback
- ``retrain`` / ``reconstruct``: what each repair feeds the loop (its batches and its loss)
- ``subsets``: PERP's parameter subsets (biases, norms, head, head LoRA, embeddings, full)
- ``adapters/``: MaskLoRA, ScaleLoRA, LoRAPrune and plain LoRA on the pruned linears; their merge
- ``mask_keeper``: records, re-applies and verifies the pruning masks
- ``master``: float32 master copies of half-precision trained tensors
- ``lean_activations``: norm and MLP forwards that keep fewer activations for backward
- ``tying``: a head tied to the embeddings, and giving it its own copy
"""
