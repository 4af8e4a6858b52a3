"""The dataset card: counts and scores as tables, in a stable layout."""

from __future__ import annotations

import polars as pl

from safeforge.report.card import by_judge, dataset_counts, render


def dataset(order: list[int]) -> pl.DataFrame:
    rows = [
        {
            "image_id": "a",
            "scenario": "s1",
            "category": "privacy",
            "label": "unsafe",
            "split": "train",
            "query_type": "unsafe",
        },
        {
            "image_id": "a",
            "scenario": "s1",
            "category": "privacy",
            "label": "safe",
            "split": "train",
            "query_type": "benign",
        },
        {
            "image_id": "b",
            "scenario": "s1",
            "category": "privacy",
            "label": "safe",
            "split": "test",
            "query_type": "contrast",
        },
        {
            "image_id": "b",
            "scenario": "s2",
            "category": "self_harm",
            "label": "unsafe",
            "split": "test",
            "query_type": "unsafe",
        },
    ]
    return pl.DataFrame([rows[i] for i in order])


STAGE = {"ingest": {"rows_in": 3, "rows_out": 2, "dropped": {"corrupt_image": 1}}}
SCORES = {"own_test": {"n": 2, "accuracy": 0.5, "auroc": None, "by_subset": {}}}


def test_counts_and_scores_are_rendered():
    text = render(dataset([0, 1, 2, 3]), STAGE, SCORES, top_drop_reasons=5)
    assert "4 records over 2 images, 2 scenarios, 2 categories." in text
    assert "| category | safe | unsafe |" in text
    assert "| privacy | 2 | 1 |" in text and "| self_harm | 0 | 1 |" in text
    assert "| split | unsafe | benign | contrast |" in text
    assert "| test | 1 | 0 | 1 |" in text
    assert "| ingest | 3 | 2 | corrupt_image: 1 |" in text
    assert "| own_test | 2 | 0.500 | n/a |" in text


def test_layout_does_not_depend_on_row_order():
    assert render(dataset([0, 1, 2, 3]), STAGE, SCORES, 5) == render(
        dataset([3, 2, 1, 0]), STAGE, SCORES, 5
    )


def test_transfer_score_refusals_and_official_table_are_rendered():
    scores = {
        **SCORES,
        "mmsafeaware": {
            "n": 3,
            "balanced_accuracy": 0.75,
            "refused": {"missing_image": 2},
            "official": {"Typical": 1.0, "Total": 0.5, "counts": {}, "deviations": ["Id 128."]},
        },
    }
    transfer = {"transfer_score": 0.75, "transfer_benchmarks": ["mmsafeaware"]}
    text = render(dataset([0, 1, 2, 3]), STAGE, scores, 5, transfer)
    assert "Transfer score (mean balanced accuracy over mmsafeaware): **0.750**" in text
    assert "Items refused (not scored): missing_image: 2." in text
    assert "| Typical | Total |" in text and "| 1.000 | 0.500 |" in text
    assert "- Id 128." in text
    none = {"transfer_score": None, "transfer_benchmarks": []}
    assert "Transfer score: n/a" in render(dataset([0, 1, 2, 3]), STAGE, SCORES, 5, none)


def test_judges_are_side_by_side_per_benchmark():
    scores = {
        "own_test": {
            "judge": "probe",
            "balanced_accuracy": 0.9,
            "auroc": 0.95,
            "other_judges": {"clue": {"judge": "clue", "balanced_accuracy": 0.7, "auroc": 0.8}},
        },
        "siuo": {
            "judge": "probe",
            "balanced_accuracy": 0.6,
            "auroc": None,
            "other_judges": {"clue": {"judge": "clue", "balanced_accuracy": 0.65, "auroc": 0.7}},
        },
    }
    assert by_judge(scores)["clue"]["siuo"]["balanced_accuracy"] == 0.65
    assert list(by_judge(scores)) == ["probe", "clue"]
    text = render(dataset([0, 1, 2, 3]), STAGE, scores, 5)
    assert "### Judges side by side" in text
    header = "| benchmark | probe balanced acc. | probe AUROC | clue balanced acc. | clue AUROC |"
    assert header in text
    assert "| own_test | 0.900 | 0.950 | 0.700 | 0.800 |" in text
    assert "| siuo | 0.600 | n/a | 0.650 | 0.700 |" in text
    # one judge: no side-by-side section
    assert "side by side" not in render(dataset([0, 1, 2, 3]), STAGE, SCORES, 5)


def test_dataset_counts_are_nested_by_category_and_label():
    counts = dataset_counts(dataset([0, 1, 2, 3]))
    assert counts["records"] == 4 and counts["images"] == 2
    assert counts["by_label"] == {"safe": 2, "unsafe": 2}
    assert counts["by_category"] == {
        "privacy": {"safe": 2, "unsafe": 1},
        "self_harm": {"unsafe": 1},
    }
    assert sum(counts["by_split"].values()) == 4
