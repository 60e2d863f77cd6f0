"""The methods table's grid and its plain-words summary (bench/methods_bench.py)."""


import pytest


@pytest.fixture
def bench(bench_module):
    return bench_module("methods_bench", "prune_bench")


def test_the_grid_holds_every_combination_the_methods_define_once(bench):
    cases = bench.cases()
    labels = [bench.label(c) for c in cases]
    assert len(labels) == len(set(labels)) == 3 * 4 * 2 * 2 + (4 + 1) * 2  # unstructured x OWL; 2:4: RIA permuted too
    assert not [c for c in cases if c["pattern"] == "2:4" and c["allocation"] == "owl"]
    assert {c["method"] for c in cases if c["ria_permute"] != "none"} == {"ria"}
    assert "70% sparsegpt + OWL + DSnoT" in labels and "2:4 ria + permutation + DSnoT" in labels


def test_the_summary_counts_where_each_step_helped_and_names_best_and_worst(bench):
    def case(method, allocation, refine, ppl, sparsity=0.5):
        return {"method": method, "pattern": "unstructured", "sparsity": sparsity, "allocation": allocation,
                "refine": refine, "ria_permute": "none", "pruned_ppl": ppl}

    every = [case("wanda", "uniform", "none", 50.0), case("wanda", "owl", "none", 40.0),
             case("wanda", "uniform", "dsnot", 55.0), case("wanda", "owl", "dsnot", 42.0),
             case("ria", "uniform", "none", 60.0, 0.7), case("ria", "owl", "none", 66.0, 0.7)]
    owl, dsnot = bench.verdicts(every)
    assert owl.startswith("- OWL: lower perplexity in 2 of 3 comparisons")
    assert "best 50% wanda + OWL + DSnoT (55.00 -> 42.00)" in owl and "worst 70% ria + OWL (60.00 -> 66.00)" in owl
    assert dsnot.startswith("- DSnoT: lower perplexity in 0 of 2 comparisons, median change +7.5%")


def test_the_overview_has_a_column_per_target_and_marks_each_columns_lowest(bench):
    def case(method, pattern, sparsity, allocation, ppl):
        return {"method": method, "pattern": pattern, "sparsity": sparsity, "allocation": allocation,
                "refine": "none", "ria_permute": "none", "pruned_ppl": ppl}

    every = [case("wanda", "unstructured", 0.5, "uniform", 60.0), case("wanda", "unstructured", 0.5, "owl", 58.0),
             case("wanda", "2:4", 0.5, "uniform", 90.0), case("magnitude", "2:4", 0.5, "uniform", 400.0)]
    lines = bench.overview(every).splitlines()
    assert lines[0] == "| score | allocation | refine | 50% | 2:4 |"
    assert lines[2:] == ["| magnitude | uniform | - | - | 400.00 |", "| wanda | uniform | - | 60.00 | **90.00** |",
                         "| wanda | OWL | - | **58.00** | - |"]
