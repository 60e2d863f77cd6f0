"""perp_engine.result.notices: a run's lines as notes (informational) or warnings (something to look at), older
stored runs included."""

from perp_engine.result import NOTHING_TRAINED, Notice, RunResult, notices

MISSING = f"biases: no bias parameters in LlamaForCausalLM; {NOTHING_TRAINED}"


def test_levels_of_a_new_result():
    result = RunResult(config={}, trainable_params=10, warnings=["loss became nan at step 3", "diverged: ppl 1e9"],
                       notes=[MISSING, "masklora: merged 4 layer(s)"], diverged="diverged: ppl 1e9")
    assert notices(result.to_dict()) == [Notice("warning", "loss became nan at step 3"), Notice("note", MISSING),
                                         Notice("note", "masklora: merged 4 layer(s)")]


def test_an_older_run_stored_a_missing_subset_as_a_warning():
    old = {"trainable_params": 10, "warnings": [MISSING], "notes": []}
    assert notices(old) == [Notice("note", MISSING)]
    nothing_trained = {"trainable_params": 0, "warnings": [MISSING]}
    assert notices(nothing_trained) == [Notice("warning", MISSING)]
