"""Cross-validation folds by scan (patient), fixed and written down so every method and every
session uses the same ones.

A fold file lists the scans of each fold (and, for the reader, their slices); no scan is in two
folds, so no slice of a test scan is ever seen in training.
"""

import json
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence

from SAMIHSLib.io.atomic_write import write_text_atomic

from .datasets import Case, DatasetError


def make_scan_folds(cases: Sequence[Case], count: int) -> List[List[str]]:
    """``count`` folds of scans, balanced in slices per dataset (the part of the patient name
    before "/"), deterministic: the same cases always give the same folds."""
    return extend_scan_folds([[] for _ in range(count)], cases)


def extend_scan_folds(folds: List[List[str]], cases: Sequence[Case]) -> List[List[str]]:
    """``folds`` with every scan of ``cases`` that is in none of them added, by the same balance
    (bleed slices per dataset, then scans without bleed spread evenly); the scans already placed
    keep their fold, so results on the earlier folds stay comparable. Deterministic."""
    count = len(folds)
    slices: Dict[str, int] = defaultdict(int)
    for case in cases:
        slices[case.patient] += len(case.hemorrhage_slices())
    placed = {scan for fold in folds for scan in fold}
    if count < 2 or count > len(set(slices) | placed):
        raise ValueError(f"Cannot make {count} scan folds from {len(set(slices) | placed)} scans.")
    folds = [list(fold) for fold in folds]
    per_dataset: Dict[str, List[int]] = defaultdict(lambda: [0] * count)
    bleed_free: Dict[str, List[int]] = defaultdict(lambda: [0] * count)
    totals = [0] * count
    for index, fold in enumerate(folds):
        for scan in fold:
            per_dataset[scan.split("/")[0]][index] += slices.get(scan, 0)
            bleed_free[scan.split("/")[0]][index] += int(slices.get(scan, 0) == 0 and scan in slices)
            totals[index] += slices.get(scan, 0)
    new = [scan for scan in slices if scan not in placed]
    for scan in sorted(new, key=lambda s: (s.split("/")[0], -slices[s], s)):
        dataset = scan.split("/")[0]
        if slices[scan]:
            fold = min(range(count), key=lambda f: (per_dataset[dataset][f], totals[f], len(folds[f]), f))
        else:
            fold = min(range(count), key=lambda f: (bleed_free[dataset][f], len(folds[f]), f))
            bleed_free[dataset][fold] += 1
        folds[fold].append(scan)
        per_dataset[dataset][fold] += slices[scan]
        totals[fold] += slices[scan]
    return [sorted(fold) for fold in folds]


def write_folds(path: Path, folds: List[List[str]], cases: Sequence[Case], description: str) -> Path:
    """The fold file: each fold's scans and their slice names."""
    by_scan: Dict[str, List[str]] = defaultdict(list)
    for case in cases:
        by_scan[case.patient].append(case.name)
    document = {"description": description,
                "folds": [{"scans": fold, "slices": sorted(n for s in fold for n in by_scan[s])} for fold in folds]}
    return write_text_atomic(Path(path), json.dumps(document, indent=2) + "\n")


def read_fold_scans(path: Path) -> List[List[str]]:
    """The scans of each fold in a fold file, unchecked (e.g. to extend it)."""
    try:
        document = json.loads(Path(path).read_text())
        return [list(fold["scans"]) for fold in document["folds"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DatasetError(f"{path} is not a fold file: {error}") from error


def read_folds(path: Path, cases: Sequence[Case]) -> List[List[str]]:
    """The scans of each fold in ``path``, checked against ``cases``: every scan in exactly one
    fold, and every case's scan in some fold."""
    folds = read_fold_scans(path)
    seen: Dict[str, int] = {}
    for index, fold in enumerate(folds):
        for scan in fold:
            if scan in seen:
                raise DatasetError(f"{path}: scan {scan} is in fold {seen[scan]} and fold {index}.")
            seen[scan] = index
    missing = sorted({case.patient for case in cases} - set(seen))
    if missing:
        raise DatasetError(f"{path} places no fold for scans {missing[:5]} ({len(missing)} in all).")
    return folds


def fold_of_scan(folds: List[List[str]]) -> Dict[str, int]:
    """scan -> index of its fold."""
    return {scan: index for index, fold in enumerate(folds) for scan in fold}
