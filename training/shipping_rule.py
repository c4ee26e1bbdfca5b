"""The rule that picks the default model from the cross-validation records.

A fine-tuned candidate becomes the default only if, on every table (2D slices and 3D volumes),
it beats ``lite-base`` on clicked-bleed Dice after 1 and after 3 clicks (the deepest first click),
and on no subtype is it worse than ``lite-base`` by more than 0.03 after either.
"""

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

RULE_CLICKS = (1, 3)
MAX_SUBTYPE_LOSS = 0.03


@dataclass(frozen=True)
class RuleTable:
    """One table's records and the names its two methods carry there."""

    name: str
    records: Path
    candidate: str
    baseline: str


@dataclass(frozen=True)
class RuleCheck:
    table: str
    clicks: int
    group: str  # "overall" or a subtype
    candidate: float
    baseline: float
    passed: bool


def _subtypes(row: Dict[str, str]) -> List[str]:
    """A 2D row's subtype, or each flag of a 3D row (a volume counts under every flag it carries)."""
    if "subtypes" in row:
        return [flag for flag in row["subtypes"].split("+") if flag]
    return [row["subtype"]]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def table_checks(table: RuleTable) -> List[RuleCheck]:
    """Every comparison the rule makes on one table."""
    with open(table.records, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["protocol"] == "deepest"]
    checks = []
    for clicks in RULE_CLICKS:
        by_method: Dict[str, Dict[str, List[float]]] = {}
        for row in rows:
            if int(row["clicks"]) != clicks or row["method"] not in (table.candidate, table.baseline):
                continue
            groups = by_method.setdefault(row["method"], {})
            for group in ["overall"] + _subtypes(row):
                groups.setdefault(group, []).append(float(row["dice_clicked"]))
        if set(by_method) != {table.candidate, table.baseline}:
            raise ValueError(f"{table.records} lacks {clicks}-click records of "
                             f"{sorted({table.candidate, table.baseline} - set(by_method))}.")
        for group, values in sorted(by_method[table.baseline].items()):
            candidate = _mean(by_method[table.candidate][group])
            baseline = _mean(values)
            passed = candidate > baseline if group == "overall" else candidate >= baseline - MAX_SUBTYPE_LOSS
            checks.append(RuleCheck(table.name, clicks, group, candidate, baseline, passed))
    return checks


def shipping_decision(tables: Sequence[RuleTable]) -> Tuple[bool, List[RuleCheck]]:
    """(whether the candidate ships, every check made)."""
    checks = [check for table in tables for check in table_checks(table)]
    return all(check.passed for check in checks), checks


def checks_markdown(checks: Sequence[RuleCheck]) -> str:
    """The checks as a table, failures marked."""
    lines = ["| table | clicks | group | candidate | lite-base | passes |", "|---|---|---|---|---|---|"]
    lines += [f"| {c.table} | {c.clicks} | {c.group} | {c.candidate:.3f} | {c.baseline:.3f} | "
              f"{'yes' if c.passed else '**no**'} |" for c in checks]
    return "\n".join(lines) + "\n"
