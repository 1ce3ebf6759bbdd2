"""The robustness reports' tables: means over seeds, changes in points, the bar and the aim."""

import pytest

pd = pytest.importorskip("pandas")

from pneumo_utils.results.robustness_tables import (  # noqa: E402
    robustness_distance,
    robustness_table,
    subgroup_table,
)


def _row(family, kind, strength, middle, sens, spec, auc, clean=(0.9, 0.9, 0.95)):
    row = dict(family=family, kind=kind, strength=strength, middle=middle,
               sensitivity=sens, specificity=spec, roc_auc=auc)  # fmt: skip
    if kind != "clean":
        row.update(delta_sensitivity=sens - clean[0], delta_specificity=spec - clean[1],
                   delta_roc_auc=auc - clean[2])  # fmt: skip
    return row


def _report(zoom_specificity: float, lungs_auc: float, ece: float) -> dict:
    return dict(
        perturbations=[
            _row("none", "clean", None, True, 0.9, 0.9, 0.95),
            _row("zoom in", "natural", 0.1, False, 0.9, 0.9, 0.95),
            _row("zoom in", "natural", 0.2, True, 0.9, zoom_specificity, 0.95),
            _row("gamma", "natural", 1.3, True, 0.88, 0.89, 0.948),
            _row("lungs covered", "occlusion", None, True, 0.5, 0.5, lungs_auc),
        ],
        subgroups=[
            dict(subgroup="IM-*", class_name="NORMAL", metric="specificity", n=10, value=0.95),
            dict(
                subgroup="NORMAL2-*", class_name="NORMAL", metric="specificity", n=20, value=0.85
            ),  # fmt: skip
        ],
        calibration=dict(test=dict(ece=ece, brier=0.1, n=30), val=dict(ece=0.02, brier=0.05, n=8)),
    )


def test_the_table_shows_middle_strengths_with_changes_in_points():
    table = robustness_table([_report(0.7, 0.6, 0.04), _report(0.8, 0.6, 0.04)])
    assert list(table.index) == ["none", "zoom in", "gamma", "lungs covered"]
    assert table.loc["zoom in", "strength"].startswith("0.2,")  # the middle, not the mild one
    assert table.loc["zoom in", "Δ specificity (points)"] == "-15.0"  # mean of -20 and -10
    assert table.loc["none", "Δ specificity (points)"] == ""  # the reference has no change


def test_the_bar_and_the_aim_are_judged_on_the_mean_over_seeds():
    distance = robustness_distance([_report(0.86, 0.7, 0.06), _report(0.88, 0.62, 0.04)])
    zoom = distance.loc["zoom in: worst Δ sensitivity or specificity; Δ AUC"]
    assert zoom["value"] == "3.0, 0.0 points"
    assert zoom["bar"] and not zoom["aim"]
    gamma = distance.loc["gamma: worst Δ sensitivity or specificity; Δ AUC"]
    assert gamma["bar"] and gamma["aim"]  # 2 points and 0.2 AUC points
    assert not distance.loc["specificity of the NORMAL2-* NORMAL files", "bar"]
    assert distance.loc["specificity of the IM-* NORMAL files", "bar"]
    assert distance.loc["ECE on test", "value"] == "0.050"
    assert distance.loc["ECE on test", "bar"]  # 0.05 is within the bar (≤)
    lungs = distance.loc["AUC with the lungs covered: mean; highest seed"]
    assert lungs["value"] == "0.660; 0.700"
    assert not lungs["bar"] and not lungs["aim"]  # the bar: mean at most 0.60, every seed 0.65
    assert distance_with_lungs(0.58, 0.62)["bar"]
    assert not distance_with_lungs(0.50, 0.68)["bar"]  # one seed above 0.65, the mean 0.59
    assert distance_with_lungs(0.54, 0.56)["aim"] and not distance_with_lungs(0.54, 0.58)["aim"]
    assert set(distance["seeds"]) == {2}


def distance_with_lungs(*aucs: float) -> pd.Series:
    reports = [_report(0.9, auc, 0.04) for auc in aucs]
    return robustness_distance(reports).loc["AUC with the lungs covered: mean; highest seed"]


def test_the_strength_says_what_it_measures():
    table = robustness_table([_report(0.7, 0.6, 0.04)])
    assert table.loc["zoom in", "strength"] == "0.2, enlargement (×)"
    assert table.loc["none", "strength"] == ""


def test_subgroups_and_calibration_are_one_table():
    table = subgroup_table([_report(0.8, 0.6, 0.04), _report(0.8, 0.6, 0.06)])
    assert table.loc["NORMAL2-*", "value"] == "0.850 ± 0.000"
    ece = table[(table.index == "all test") & (table["metric"] == "ECE")]
    assert ece["value"].iloc[0] == "0.050 ± 0.014"
