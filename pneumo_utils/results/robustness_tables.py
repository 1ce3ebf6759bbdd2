"""Tables made from the runs' robustness reports (robustness.json): each perturbation family,
the subgroups and calibration, and the distance from the view round's bar and aim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pneumo_utils.analysis.perturbations import STRENGTH_UNITS
from pneumo_utils.analysis.robustness import ROBUSTNESS_JSON, read_report
from pneumo_utils.results.tables import mean_sd


def robustness_reports(table: pd.DataFrame, recipe: str) -> list[dict]:
    """The robustness report of each seed of `recipe` that has one."""
    chosen = table[table["recipe"] == recipe].sort_values("seed")
    return [read_report(run) for run in chosen["run"] if (Path(run) / ROBUSTNESS_JSON).exists()]


def robustness_table(reports: list[dict]) -> pd.DataFrame:
    """Each perturbation family at its middle strength (and the anatomy and occlusion tests),
    mean over the seeds' reports: sensitivity, specificity and AUC, and their changes from the
    unperturbed test set in points."""
    frames = [pd.DataFrame(report["perturbations"]) for report in reports]
    every = pd.concat([f.assign(seed=i) for i, f in enumerate(frames)], ignore_index=True)
    shown = every[every["middle"] | (every["kind"] != "natural")]
    grouped = shown.groupby(["family", "kind"], sort=False)
    rows = []
    for (family, kind), group in grouped:
        row = {"change": family, "kind": kind, "strength": _strength(family, group["strength"])}
        for metric, label in (("sensitivity", "sensitivity"), ("specificity", "specificity"),
                              ("roc_auc", "AUC")):  # fmt: skip
            row[label] = mean_sd(group[metric])
            if kind != "clean":
                row[f"Δ {label} (points)"] = f"{100 * group[f'delta_{metric}'].mean():+.1f}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("change").fillna("")


def _strength(family: str, strengths: pd.Series) -> str:
    """A family's strength with what it measures, e.g. "1.25, enlargement (×)"; nothing for
    the unperturbed images or a change without strengths."""
    unit = STRENGTH_UNITS.get(family, "")
    if strengths.isna().all() or not unit:
        return ""
    return f"{strengths.iloc[0]:g}, {unit}"


def recipe_comparison(run_dirs: dict[str, Path]) -> pd.DataFrame:
    """The change in specificity and sensitivity (points) of each family at its middle strength,
    and the occlusion pair's AUC, side by side for the runs (name -> folder) that have a
    robustness report; the others are left out."""
    columns = {}
    for name, run in run_dirs.items():
        if not (Path(run) / ROBUSTNESS_JSON).exists():
            continue
        table = robustness_table([read_report(run)])
        columns[(name, "Δ specificity")] = table["Δ specificity (points)"]
        columns[(name, "Δ sensitivity")] = table["Δ sensitivity (points)"]
        columns[(name, "AUC")] = table["AUC"].str.replace(" (1 seed)", "")
    return pd.DataFrame(columns)


def subgroup_table(reports: list[dict]) -> pd.DataFrame:
    """Specificity of each NORMAL file family and sensitivity of bacterial and viral
    pneumonia, mean ± sd over the seeds' reports; ECE and Brier on test and validation."""
    rows = pd.DataFrame([g for report in reports for g in report["subgroups"]])
    table = rows.groupby(["subgroup", "class_name", "metric", "n"], sort=True)["value"].apply(
        mean_sd
    )
    calibration = []
    for split in ("test", "val"):
        for key in ("ece", "brier"):
            values = pd.Series([r["calibration"][split][key] for r in reports])
            calibration.append(dict(subgroup=f"all {split}", class_name="both",
                                    metric=key.upper() if key == "ece" else "Brier",
                                    n=reports[0]["calibration"][split]["n"],
                                    value=mean_sd(values)))  # fmt: skip
    return pd.concat([table.reset_index(), pd.DataFrame(calibration)]).set_index("subgroup")


# The view round's bar and aim on the perturbed test set (docs/frame.md, round 4): the mean of
# the seeds' reports; the lungs-covered AUC also seed by seed.
ROBUSTNESS_BAR = dict(
    points=5.0, auc_points=1.0, subgroup_specificity=0.90, ece=0.05,
    lungs_covered_auc=0.60, lungs_covered_auc_every_seed=0.65,
)  # fmt: skip
ROBUSTNESS_AIM = dict(points=3.0, auc_points=1.0, lungs_covered_auc=0.55)


def robustness_distance(reports: list[dict]) -> pd.DataFrame:
    """For every natural family at middle strength, the worst of the seeds' mean changes, and
    whether the bar (sensitivity and specificity within 5 points, AUC within 1) and the aim
    (within 3 points) hold; then the subgroups, the ECE and the lungs-covered AUC (the bar: at
    most 0.60 on average and 0.65 for every seed; the aim: at most 0.55)."""
    frames = pd.concat([pd.DataFrame(r["perturbations"]) for r in reports], ignore_index=True)
    natural = frames[(frames["kind"] == "natural") & frames["middle"]]
    means = (
        natural.groupby("family", sort=False)[
            ["delta_sensitivity", "delta_specificity", "delta_roc_auc"]
        ].mean()
        * 100
    )
    rows = []
    for family, change in means.iterrows():
        worst_rate = max(abs(change["delta_sensitivity"]), abs(change["delta_specificity"]))
        auc = abs(change["delta_roc_auc"])
        rows.append(
            {
                "check": f"{family}: worst Δ sensitivity or specificity; Δ AUC",
                "value": f"{worst_rate:.1f}, {auc:.1f} points",
                "bar": bool(
                    worst_rate <= ROBUSTNESS_BAR["points"] and auc <= ROBUSTNESS_BAR["auc_points"]
                ),  # fmt: skip
                "aim": bool(
                    worst_rate <= ROBUSTNESS_AIM["points"] and auc <= ROBUSTNESS_AIM["auc_points"]
                ),  # fmt: skip
            }
        )
    groups = pd.DataFrame([g for r in reports for g in r["subgroups"]])
    for name, group in groups[groups["class_name"] == "NORMAL"].groupby("subgroup"):
        value = group["value"].mean()
        rows.append(dict(check=f"specificity of the {name} NORMAL files", value=f"{value:.3f}",
                         bar=bool(value >= ROBUSTNESS_BAR["subgroup_specificity"]),
                         aim=""))  # fmt: skip
    ece = np.mean([r["calibration"]["test"]["ece"] for r in reports])
    rows.append(dict(check="ECE on test", value=f"{ece:.3f}",
                     bar=bool(ece <= ROBUSTNESS_BAR["ece"]), aim=""))  # fmt: skip
    lungs = frames[frames["family"] == "lungs covered"]["roc_auc"]
    rows.append(dict(check="AUC with the lungs covered: mean; highest seed",
                     value=f"{lungs.mean():.3f}; {lungs.max():.3f}",
                     bar=bool(lungs.mean() <= ROBUSTNESS_BAR["lungs_covered_auc"]
                              and lungs.max() <= ROBUSTNESS_BAR["lungs_covered_auc_every_seed"]),
                     aim=bool(lungs.mean() <= ROBUSTNESS_AIM["lungs_covered_auc"])))  # fmt: skip
    table = pd.DataFrame(rows).set_index("check")
    table["seeds"] = len(reports)
    return table
