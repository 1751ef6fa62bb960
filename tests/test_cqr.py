import pandas as pd
import pytest

from pipeline.stages.cqr import CQRConfig, cqr_markdown, cqr_table, cutoffs, frequency_label


@pytest.mark.parametrize("n, total, label", [
    # 10 cases: general 9-10, typical 6-8, variant 2-5, single 1
    (10, 10, "general"), (9, 10, "general"), (8, 10, "typical"), (6, 10, "typical"),
    (5, 10, "variant"), (2, 10, "variant"), (1, 10, "single case"), (0, 10, "none"),
    # 8 cases: half is 4, so 4 is variant and 5 typical
    (4, 8, "variant"), (5, 8, "typical"), (7, 8, "general"),
    # 20 cases (> 15): rare 2-3, variant 4-10, typical 11-18, general 19-20
    (2, 20, "rare"), (3, 20, "rare"), (4, 20, "variant"), (10, 20, "variant"),
    (11, 20, "typical"), (18, 20, "typical"), (19, 20, "general"),
])
def test_frequency_labels_follow_hill_2005(n, total, label):
    assert frequency_label(n, total) == label


def test_cutoffs_are_configurable():
    strict = CQRConfig(general_all_but=0, rare_above_cases=5, rare_max_cases=2)
    assert frequency_label(9, 10, strict) == "typical"
    assert frequency_label(2, 10, strict) == "rare"
    assert frequency_label(3, 10, strict) == "variant"
    assert cutoffs(10) == {"single case": [1, 1], "variant": [2, 5], "typical": [6, 8], "general": [9, 10]}


def test_cqr_table_orders_by_domain_then_cases_and_quotes_the_first_quote():
    themes = pd.DataFrame({"theme_id": [0, 1, 2], "name": ["a", "b", "c"], "domain_id": [1, 0, 0],
                           "n_cases": [5, 2, 4], "n_segments": [9, 3, 6],
                           "frequency_label": ["typical", "variant", "variant"],
                           "quote_ids": ["s1; s2", "s3", "s4"]})
    domains = pd.DataFrame({"domain_id": [0, 1], "name": ["D0", "D1"]})
    segs = pd.DataFrame({"segment_id": ["s1", "s2", "s3", "s4"], "case_id": ["A", "B", "C", "D"],
                         "text": ["one | pipe", "two", "three", "four"]})
    table = cqr_table(themes, domains, segs, 8)
    assert table["category"].tolist() == ["c", "b", "a"]
    assert table.iloc[2]["quote"] == "one | pipe" and table.iloc[2]["quote_case"] == "A"
    md = cqr_markdown(table)
    assert "| D0 | c | variant | 4/8 |" in md
    assert "one \\| pipe" in md  # a pipe in a quote does not break the table
