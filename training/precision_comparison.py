"""bf16 against fp32 on the cross-validation tables: the evidence behind ``auto``'s precision.

Reads the ``records.csv`` of two runs of the same evaluation (``clickeval`` in 2D or ``volumeeval``
in 3D, same folds, same method) that differ only in the engine's precision, and compares every
row the tables report: each protocol and click count, overall, per subtype and per dataset, for
the clicked-bleed and all-bleed Dice. The verdict is whether no row moves by more than
:data:`SAMIHSLib.engines.precision.BF16_MAX_DICE_DIFFERENCE`.
"""

import csv
import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from SAMIHSLib.engines.precision import BF16_MAX_DICE_DIFFERENCE
from SAMIHSLib.io.atomic_write import write_text_atomic

DICE_COLUMNS = ("dice_clicked", "dice_all")


@dataclass
class ComparedRow:
    """One row of a table in both precisions (mean Dice over ``cases``)."""

    table: str
    row: str
    metric: str
    cases: int
    fp32: float
    bf16: float

    @property
    def difference(self) -> float:
        return self.bf16 - self.fp32


def _case_name(record: Dict[str, str]) -> str:
    return record.get("slice") or record["volume"]


def _groups(record: Dict[str, str]) -> List[str]:
    """The table rows a record counts in: overall, its subtype(s) and its dataset."""
    groups = ["all"]
    if record.get("subtype"):  # 2D: the clicked bleed's subtype
        groups.append(f"subtype {record['subtype']}")
    for flag in filter(None, record.get("subtypes", "").split("+")):  # 3D: flags on the bleed's slices
        groups.append(f"subtype flag {flag}")
    if record.get("dataset"):
        groups.append(f"dataset {record['dataset']}")
    return groups


def _read(path: Path) -> Dict[Tuple[str, str, str, str], Dict[str, str]]:
    with open(path, newline="") as handle:
        records = list(csv.DictReader(handle))
    return {(r["method"], _case_name(r), r["protocol"], r["clicks"]): r for r in records}


def compare_records(table: str, fp32_csv: Path, bf16_csv: Path) -> List[ComparedRow]:
    """Every reported row of ``table`` in both runs; the runs must hold the same cases."""
    fp32, bf16 = _read(Path(fp32_csv)), _read(Path(bf16_csv))
    if set(fp32) != set(bf16):
        missing = sorted(set(fp32) ^ set(bf16))[:3]
        raise ValueError(f"{fp32_csv} and {bf16_csv} do not hold the same cases (e.g. {missing}).")
    sums: Dict[Tuple[str, str], List[Tuple[float, float]]] = defaultdict(list)
    for key, record in fp32.items():
        method, _, protocol, clicks = key
        for group in _groups(record):
            for metric in DICE_COLUMNS:
                row = f"{method}; {protocol}, {clicks} click(s); {group}"
                sums[(row, metric)].append((float(record[metric]), float(bf16[key][metric])))
    return [ComparedRow(table, row, metric, len(pairs), sum(a for a, _ in pairs) / len(pairs),
                        sum(b for _, b in pairs) / len(pairs))
            for (row, metric), pairs in sorted(sums.items())]


def verdict(rows: Sequence[ComparedRow], limit: float = BF16_MAX_DICE_DIFFERENCE) -> Dict[str, object]:
    """Whether bf16 stays within ``limit`` of fp32 on every row, and the worst row."""
    worst = max(rows, key=lambda r: abs(r.difference))
    return {"bf16_within_limit": all(abs(r.difference) <= limit for r in rows), "limit": limit,
            "rows": len(rows), "largest_difference": round(worst.difference, 4),
            "largest_difference_row": f"{worst.table}: {worst.row} ({worst.metric})"}


def write_comparison(rows: Sequence[ComparedRow], out: Path, model: str, sources: Dict[str, str]) -> Dict[str, object]:
    """comparison.json (every row and the verdict) and comparison.md (the rows that moved)."""
    result = {"model": model, "sources": sources, **verdict(rows),
              "table": [{**asdict(r), "difference": round(r.difference, 4)} for r in rows]}
    write_text_atomic(out / "comparison.json", json.dumps(result, indent=1) + "\n")
    moved = [r for r in rows if abs(r.difference) >= 0.0005]
    lines = [f"# bf16 against fp32 on the cross-validation tables: {model}", "",
             f"{result['rows']} rows (mean Dice per table row, both precisions on the same cases); "
             f"largest difference {result['largest_difference']:+.4f} ({result['largest_difference_row']}); "
             f"limit {result['limit']}: bf16 {'stays within it' if result['bf16_within_limit'] else 'does NOT stay within it'}.",
             "", "Sources: " + "; ".join(f"{name}: `{path}`" for name, path in sources.items()), "",
             f"Rows that moved by 0.0005 or more ({len(moved)} of {len(rows)}):", "",
             "| table | row | metric | cases | fp32 | bf16 | difference |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.table} | {r.row} | {r.metric} | {r.cases} | {r.fp32:.4f} | {r.bf16:.4f} | {r.difference:+.4f} |"
              for r in sorted(moved, key=lambda r: -abs(r.difference))]
    write_text_atomic(out / "comparison.md", "\n".join(lines) + "\n")
    return result
