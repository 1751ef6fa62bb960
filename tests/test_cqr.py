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
                           "quote_ids": [["s1", "s2"], ["s3"], ["s4"]]})
    domains = pd.DataFrame({"domain_id": [0, 1], "name": ["D0", "D1"]})
    segs = pd.DataFrame({"segment_id": ["s1", "s2", "s3", "s4"], "case_id": ["A", "B", "C", "D"],
                         "text": ["one | pipe", "two", "three", "four"]})
    table = cqr_table(themes, domains, segs, 8)
    assert table["category"].tolist() == ["c", "b", "a"]
    assert table.iloc[2]["quote"] == "one | pipe" and table.iloc[2]["quote_case"] == "A"
    md = cqr_markdown(table)
    assert "| D0 | c | variant | 4/8 |" in md
    assert "one \\| pipe" in md  # a pipe in a quote does not break the table


def test_cross_analysis_labels_counts_and_places_every_segment():
    """Six cases; theme 0 in five of them (general), theme 1 in two (variant); one
    segment stays unassigned. Domains: theme 0 alone, theme 1 alone."""
    import numpy as np

    from pipeline.stages.cqr import cross_analysis
    from pipeline.stages.domains import DomainAssignment
    from pipeline.types import (
        ASSIGNED_SEGMENT_COLUMNS,
        DOMAIN_COLUMNS,
        SEGMENT_COLUMNS,
        THEME_COLUMNS,
        Clustering,
    )

    cases = ["c1", "c2", "c3", "c4", "c5", "c1", "c2", "c6"]
    segments = pd.DataFrame({c: [""] * 8 for c in SEGMENT_COLUMNS})
    segments["case_id"] = cases
    segments["segment_id"] = [f"s{i}" for i in range(8)]
    segments["text"] = [f"text {i}" for i in range(8)]
    theme = np.array([0, 0, 0, 0, 0, 1, 1, -1])
    clustering = Clustering(theme=theme, strength=np.where(theme >= 0, 0.9, 0.0).astype(np.float32),
                            reassigned=np.zeros(8, bool), n_outliers_initial=1)
    themes = pd.DataFrame({"theme_id": [0, 1], "name": ["zero", "one"], "keywords": [["a"], ["b"]],
                           "key_phrases": [[], []], "n_segments": [5, 2], "n_cases": [5, 2],
                           "cases": [["c1", "c2", "c3", "c4", "c5"], ["c1", "c2"]],
                           "quote_ids": [["s0"], ["s5"]], "core_idea": ["text 0", "text 5"],
                           "mean_strength": [0.9, 0.9], "n_reassigned": [0, 0]})
    domains = DomainAssignment(
        theme_domain=np.array([1, 0]),
        domains=pd.DataFrame({"domain_id": [0, 1], "name": ["D0", "D1"], "keywords": [["b"], ["a"]],
                              "theme_ids": [[1], [0]], "n_themes": [1, 1],
                              "is_miscellaneous": [False, False]}),
        linkage=None)
    coords = np.arange(16, dtype=np.float32).reshape(8, 2)
    got = cross_analysis(segments, clustering, themes, domains, coords, CQRConfig())

    assert got.n_cases == 6
    assert list(got.segments.columns) == list(ASSIGNED_SEGMENT_COLUMNS)
    assert got.segments["domain_id"].tolist() == [1, 1, 1, 1, 1, 0, 0, -1]
    assert got.segments["theme_name"].tolist()[-3:] == ["one", "one", ""]
    assert got.segments["map_y"].tolist() == coords[:, 1].tolist()
    assert list(got.themes.columns) == list(THEME_COLUMNS)
    assert got.themes["frequency_label"].tolist() == ["general", "variant"]
    assert got.themes["domain_id"].tolist() == [1, 0]
    assert list(got.domains.columns) == list(DOMAIN_COLUMNS)
    assert got.domains["n_segments"].tolist() == [2, 5]          # the outlier counts nowhere
    assert got.domains["n_cases"].tolist() == [2, 5]
    assert got.domains["frequency_label"].tolist() == ["variant", "general"]
    assert got.table["category"].tolist() == ["one", "zero"]
    assert (got.table["cases_total"] == 6).all()
    assert "domain_id" not in themes.columns                      # the stage's table is kept
