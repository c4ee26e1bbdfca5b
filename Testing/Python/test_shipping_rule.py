"""The rule that picks the default model, on hand-made records and recomputed from the committed
cross-validation records of the fine-tuned candidate."""

import csv
from pathlib import Path

import pytest

from SAMIHSLib.model_names import DEFAULT_MODEL
from training.shipping_rule import RuleTable, shipping_decision, table_checks

RESULTS = Path(__file__).resolve().parents[2] / "training" / "results"
# The committed runs of the staged fine-tuned candidates (300 steps: what `samihs` ships; 500 steps on 3
# and on 6 augmented copies; the 6-copies recipe with balanced subtypes and aged bleeds), each beside
# lite-base on the same folds; then (vertex_check) the 6-copies and aged-bleeds candidates with the
# click handling's bone-enclosure check, beside lite-base with it; then (copies6_avx2) the 6-copies recipe
# retrained on an AVX2 CPU, run as the app runs it (lite-base as its second opinion).
COPIES6 = "SAMIHS staged, 500 steps, 6 copies (per fold)"
COPIES6_AS_THE_APP_RUNS_IT = "SAMIHS staged, 6 copies, as the app runs it (per fold)"
# The 6 copies with the boundary weight floored at 0.5 (thin bleeds), measured the same way.
THIN_FLOOR = "SAMIHS staged, 6 copies + boundary weight floor 0.5, as the app runs it (per fold)"
CANDIDATE_TABLES = {
    key: (RuleTable("2D, 59 slices", RESULTS / f"real59_5fold_{run}" / "records.csv",
                    method, "lite-base + intensity-guided click handling"),
          RuleTable("3D, 24 volumes", RESULTS / f"volumes_5fold_{run}" / "records.csv", method, "lite-base (default)"))
    for key, run, method in (("staged", "staged", "SAMIHS staged (per fold)"),
                             ("staged_long", "staged_long", "SAMIHS staged, 500 steps (per fold)"),
                             ("staged_copies6", "staged_copies6", COPIES6),
                             ("staged_balanced_aged", "staged_balanced_aged",
                              "SAMIHS staged, balanced subtypes, aged bleeds (per fold)"),
                             ("vertex_check_copies6", "vertex_check", COPIES6),
                             ("vertex_check_aged", "vertex_check", "SAMIHS staged, aged bleeds (per fold)"),
                             ("copies6_avx2", "copies6_avx2", COPIES6_AS_THE_APP_RUNS_IT),
                             ("thin_floor_avx2", "thin_floor_avx2", THIN_FLOOR))}


def _records(path: Path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["method", "protocol", "clicks", "subtype", "dice_clicked"])
        writer.writeheader()
        for method, clicks, subtype, value in rows:
            writer.writerow({"method": method, "protocol": "deepest", "clicks": clicks, "subtype": subtype,
                             "dice_clicked": value})
        writer.writerow({"method": "new", "protocol": "random", "clicks": 1, "subtype": "SDH", "dice_clicked": 0.0})
    return RuleTable("t", path, "new", "base")


@pytest.mark.parametrize("sdh_loss, overall_gain, ships", [(0.02, 0.05, True), (0.05, 0.05, False),
                                                           (0.0, -0.01, False)])
def test_the_rule_on_hand_made_records(tmp_path, sdh_loss, overall_gain, ships):
    rows = []
    for clicks in (1, 3):
        rows += [("base", clicks, "IPH", 0.7), ("new", clicks, "IPH", 0.7 + overall_gain * 2 + sdh_loss),
                 ("base", clicks, "SDH", 0.6), ("new", clicks, "SDH", 0.6 - sdh_loss)]
    decision, checks = shipping_decision([_records(tmp_path / "r.csv", rows)])
    assert decision is ships
    assert {(c.clicks, c.group) for c in checks} == {(k, g) for k in (1, 3) for g in ("overall", "IPH", "SDH")}


@pytest.mark.parametrize("run", sorted(CANDIDATE_TABLES))
def test_the_default_model_is_what_the_rule_gives_on_the_committed_records(run):
    """A candidate that passed would have to ship as ``samihs`` and become the default."""
    ships, checks = shipping_decision(CANDIDATE_TABLES[run])
    assert DEFAULT_MODEL == ("samihs" if ships else "lite-base"), [c for c in checks if not c.passed]


@pytest.mark.parametrize("run, failing", [
    ("staged_long", {("2D, 59 slices", 1, "overall"), ("2D, 59 slices", 1, "SDH"), ("2D, 59 slices", 3, "SDH")}),
    ("staged_copies6", {("2D, 59 slices", 1, "SAH"), ("2D, 59 slices", 1, "SDH"), ("2D, 59 slices", 3, "SDH"),
                        ("3D, 24 volumes", 3, "SDH")}),
    ("staged_balanced_aged", {("2D, 59 slices", 1, "SAH"), ("2D, 59 slices", 1, "SDH"), ("2D, 59 slices", 1, "overall"),
                              ("3D, 24 volumes", 1, "EDH")}),
    ("vertex_check_copies6", {("2D, 59 slices", 1, "SAH"), ("2D, 59 slices", 1, "SDH"), ("2D, 59 slices", 3, "SDH")}),
    ("vertex_check_aged", {("2D, 59 slices", 1, "SAH"), ("2D, 59 slices", 1, "SDH"), ("2D, 59 slices", 1, "overall"),
                           ("2D, 59 slices", 3, "SDH")}),
    ("copies6_avx2", {("2D, 59 slices", 1, "SAH"), ("2D, 59 slices", 3, "SDH")}),
    ("thin_floor_avx2", {("2D, 59 slices", 1, "SAH"), ("2D, 59 slices", 3, "SDH")})])
def test_the_later_candidates_fail_where_the_readme_says(run, failing):
    _, checks = shipping_decision(CANDIDATE_TABLES[run])
    assert {(c.table, c.clicks, c.group) for c in checks if not c.passed} == failing


def test_the_boundary_weight_floor_does_not_replace_the_6_copies_models():
    """The rule written before the floor's folds were trained: it replaces the 6-copies models as the
    candidate only if at least as good overall after 1 and after 3 clicks in both tables."""
    tables = [RuleTable(name, path, THIN_FLOOR, COPIES6_AS_THE_APP_RUNS_IT) for name, path in (
        ("2D", RESULTS / "real59_5fold_thin_floor_avx2" / "records.csv"),
        ("3D", RESULTS / "volumes_5fold_thin_floor_avx2" / "records.csv"))]
    at_least = {(check.table, check.clicks): check.candidate >= check.baseline
                for table in tables for check in table_checks(table) if check.group == "overall"}
    assert at_least == {("2D", 1): False, ("2D", 3): True, ("3D", 1): True, ("3D", 3): False}


def _preview_mean(path: Path, method: str, clicks: str, **columns: str) -> float:
    """Mean clicked-bleed Dice of ``method`` on folds 0-1 (deepest first click) in a records.csv, on
    the rows whose ``columns`` (e.g. subtype="SAH", dataset="bhsd") have the given values."""
    with path.open(newline="") as handle:
        values = [float(row["dice_clicked"]) for row in csv.DictReader(handle)
                  if row["method"] == method and row["fold"] in ("0", "1") and row["protocol"] == "deepest"
                  and row["clicks"] == clicks and all(row[k] == v for k, v in columns.items())]
    assert values, (path, method, clicks, columns)
    return sum(values) / len(values)


def test_the_scale_augmented_preview_stops_on_folds_0_1():
    """The rule written before the zoom candidate's folds 0-1 were trained: train folds 2-4 only if, on
    folds 0-1's slices (deepest first click), it is within 0.01 of the 6-copies models after one click
    and better than them on subarachnoid bleeds after one click."""
    zoom = ("SAMIHS staged, 6 copies + zoom 0.5 / 3x on folds 0-1 (folds 2-4 are the 6-copies models), "
            "as the app runs it")
    records = RESULTS / "real59_5fold_zoom_preview_avx2" / "records.csv"
    overall = tuple(_preview_mean(records, method, "1") for method in (zoom, COPIES6_AS_THE_APP_RUNS_IT))
    sah = tuple(_preview_mean(records, method, "1", subtype="SAH") for method in (zoom, COPIES6_AS_THE_APP_RUNS_IT))
    assert overall == pytest.approx((0.702, 0.715), abs=0.0005) and sah == pytest.approx((0.259, 0.360), abs=0.0005)
    assert not (overall[0] >= overall[1] - 0.01 and sah[0] > sah[1])


def test_the_neighbour_channel_preview_stops_on_folds_0_1():
    """The rule written before the neighbour-channel candidate's folds 0-1 were trained
    (training/results/neighbours_preview/NOTE.md): train folds 2-4 only if, on folds 0-1, 3D clicked-bleed
    Dice is >= the 6-copies models' + 0.02 after one click and >= theirs after three, and the lone MBH
    slices after one click are >= theirs - 0.02."""
    preview = RESULTS / "neighbours_preview"
    candidate = "SAMIHS staged, 6 copies + slices k-1, k, k+1 as channels, as the app runs it (per fold)"
    one, three = (tuple(_preview_mean(preview / "3d" / "records.csv", method, clicks)
                        for method in (candidate, COPIES6_AS_THE_APP_RUNS_IT)) for clicks in ("1", "3"))
    lone = tuple(_preview_mean(preview / "2d" / "records.csv", method, "1", dataset="bhsd")
                 for method in (candidate, COPIES6_AS_THE_APP_RUNS_IT))
    assert one == pytest.approx((0.399, 0.463), abs=0.0005) and three == pytest.approx((0.625, 0.656), abs=0.0005)
    assert lone == pytest.approx((0.644, 0.712), abs=0.0005)
    assert not (one[0] >= one[1] + 0.02 and three[0] >= three[1] and lone[0] >= lone[1] - 0.02)
