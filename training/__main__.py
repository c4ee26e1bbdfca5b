"""``python -m training``: train, evaluate, cross-validate by patient, and ship a checkpoint.

  python -m training train --config training/experiments/lite_decoder_clicks.json
  torchrun --standalone --nproc_per_node 2 -m training train --config CFG.json   (DistributedDataParallel)
  python -m training evaluate --model lite --dataset shared_real:../shared/data --folds training/folds/real59_5fold.json --out DIR
  python -m training crossval --config CFG.json --dataset shared_real:../shared/data \
      --folds training/folds/real59_5fold.json --runs runs/CFG --out DIR   (per-fold models, then clickeval's table)
  python -m training ship --config CFG.json --dataset folder:../shared/data/ct-ich-slices --metrics DIR/summary.json -o FILE
  python -m training pack --dataset folder:../shared/data/ct-ich-slices@0.45 -o cases.npz
  python -m training folds --dataset shared_real:../shared/data --count 5 -o training/folds/real59_5fold.json
  python -m training folds --extend training/folds/real59_5fold.json --dataset shared_real:../shared/data \
      --dataset ct_ich_volumes:../shared/data/ct-ich-volumes -o training/folds/ct_ich_all_5fold.json
  python -m training foldtrain --config training/experiments/lite_paste_folds.json --dataset shared_real:../shared/data \
      --folds training/folds/real59_5fold.json --out runs/lite_paste_folds
  python -m training volumeeval --dataset ct_ich_volumes:../shared/data/ct-ich-volumes \
      --folds training/folds/ct_ich_all_5fold.json --method region --method lite-base --out training/results/volumes_5fold
  python -m training clickeval --dataset shared_real:../shared/data --folds training/folds/real59_5fold.json \
      --method region --method lite-base --method lite --out training/results/real59_5fold
  python -m training sliceceiling --dataset ct_ich_volumes:../shared/data/ct-ich-volumes \
      --folds training/folds/ct_ich_all_5fold.json --method region --method lite-base --out DIR
      (what propagation can reach at most: a click on every slice of the clicked bleed)
  python -m training foldtrain --config training/experiments/samihs_staged_folds.json --dataset shared_real:../shared/data \
      --dataset ct_ich_volumes:../shared/data/ct-ich-volumes --folds training/folds/ct_ich_all_5fold.json --also-all \
      --out runs/samihs_staged_folds      (staged PR-adapter training on CPU: 5 folds + the all-scans model)
  python -m training shiprule --table 2D RECORDS.csv CANDIDATE lite-base-NAME --table 3D ... --out decision.md
  python -m training detectorcv --config training/experiments/bleed_detector.json \
      --dataset ct_ich_volumes:../shared/data/ct-ich-volumes --folds training/folds/ct_ich_all_5fold.json \
      --floor training/results/volumes_auto_band/auto_records.csv --out training/results/auto_detector \
      --runs runs/bleed_detector --ship Resources/Models/bleed_detector.pt   (automatic batch's detector)
  python -m training boundarycensus --dataset ct_ich_volumes:../shared/data/ct-ich-volumes --out FILE.json
      (bleeds whose boundary weight g is 0 at the loss grid: no gradient from the paper's term)
  python -m training precision --model lite-base --out training/results/precision \
      --table 2D training/results/precision/real59_5fold_openvino training/results/precision/real59_5fold_openvino-bf16

Datasets are KIND:ROOT[@PIXEL_MM]; ``packed:cases.npz`` reads what ``pack`` wrote.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import List, Sequence, Set

from SAMIHSLib.models import load_model

from SAMIHSLib.io.atomic_write import write_text_atomic
from SAMIHSLib.cpu_info import cpu_description

from .click_crossval import (PROTOCOLS, REPORTED_CLICKS, ClickRecord, evaluation_slices, method_settings, results_tables,
                             run_method, select_per_fold, summarize)
from .datasets import Case, load_dataset, write_packed
from .folds import extend_scan_folds, make_scan_folds, read_fold_scans, read_folds, write_folds
from .batches import configured_phantoms, training_slices
from .checkpoint_export import export_checkpoint
from .record_csv import read_records_csv, records_csv
from .trainer import fold_config, train
from .training_config import TrainingConfig


def _cases(specs: List[str]) -> List[Case]:
    cases: List[Case] = []
    for spec in specs:  # KIND:ROOT or KIND:ROOT@PIXEL_SPACING_MM
        kind, _, rest = spec.partition(":")
        root, _, spacing = rest.partition("@")
        cases.extend(load_dataset(kind, root, float(spacing) if spacing else None))
    return cases


def run_crossval(args: argparse.Namespace) -> int:
    """Train one model per fold with ``--config``, then the click evaluation of ``clickeval`` on the
    same folds: the floor, the baseline and the per-fold models side by side."""
    from .distributed import end_process_group, start_process_group
    from .fold_training import train_folds

    config = TrainingConfig.from_json(args.config)
    cases = _cases(args.dataset)
    group = start_process_group()  # one process, or one of torchrun's
    try:
        train_folds(config, cases, read_folds(Path(args.folds), cases), Path(args.runs),
                    group=group, extra=configured_phantoms(config))
    finally:
        end_process_group(group)
    if not group.is_main:
        return 0
    candidate = f"{config.name}={Path(args.runs) / 'fold{fold}' / 'model.samihs.pt'}"
    return _click_evaluation(args, cases, ["region", args.baseline, candidate], reuse=())


def run_train(args: argparse.Namespace) -> int:
    """One process, or one of torchrun's (rank 0 writes the checkpoint)."""
    from .distributed import end_process_group, start_process_group

    config = TrainingConfig.from_json(args.config)
    group = start_process_group()
    try:
        model, losses = train(config, group=group)
        if group.is_main:
            path = export_checkpoint(model, config, Path(config.output_dir) / "model.samihs.pt",
                                     {"final_loss": losses[-1], "processes": group.world_size},
                                     json.dumps(config.datasets))
            print(f"wrote {path}")
    finally:
        end_process_group(group)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """One model beside the floor through ``clickeval``'s protocol (nothing to choose per fold)."""
    return _click_evaluation(args, _cases(args.dataset), ["region", args.model], reuse=())


def run_ship(args: argparse.Namespace) -> int:
    config = TrainingConfig.from_json(args.config)
    cases = _cases(args.dataset)
    extra = configured_phantoms(config)
    if args.trained:  # trained elsewhere (e.g. on a GPU machine) from this config: ship as is
        model = load_model(args.trained)
    else:
        model, _ = train(fold_config(config, "all_patients"), training_slices(cases + extra), resume=False)
    # One cross-validation summary is recorded as it is; several under their run folders' names.
    summaries = {Path(m).parent.name: json.loads(Path(m).read_text()) for m in args.metrics or ()}
    metrics = next(iter(summaries.values()))["results"] if len(summaries) == 1 else \
        {name: {"folds_file": s.get("folds_file"), "results": s["results"]} for name, s in summaries.items()}
    patients = sorted({c.patient for c in cases if c.hemorrhage_slices()})  # training uses slices with bleed
    data = (f"{', '.join(args.dataset)}: the slices with bleed of all {len(patients)} patients/scans that have "
            f"any ({', '.join(patients)}) + {config.phantom_cases} synthetic phantom scans")
    path = export_checkpoint(model, config, Path(args.output), metrics, data)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def run_pack(args: argparse.Namespace) -> int:
    cases = _cases(args.dataset)
    path = write_packed(cases, Path(args.output))
    print(f"wrote {path}: {len(cases)} cases of {len({c.patient for c in cases})} patients "
          f"({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def run_folds(args: argparse.Namespace) -> int:
    cases = _cases(args.dataset)
    if args.extend:  # the scans already placed keep their folds
        folds = extend_scan_folds(read_fold_scans(Path(args.extend)), cases)
        how = f"{len(folds)} folds by scan: {args.extend}'s folds, extended with the scans of"
    else:
        folds = make_scan_folds(cases, args.count)
        how = f"{args.count} folds by scan over"
    write_folds(Path(args.output), folds, cases,
                f"{how} {', '.join(args.dataset)} ({len(cases)} cases, "
                f"{sum(len(f) for f in folds)} scans); `python -m training folds` made them")
    for index, fold in enumerate(folds):
        print(f"fold {index}: {len(fold)} scans")
    return 0


def run_foldtrain(args: argparse.Namespace) -> int:
    from .distributed import end_process_group, start_process_group
    from .fold_training import train_folds

    cases = _cases(args.dataset)
    group = start_process_group()  # one process, or one of torchrun's
    try:
        written = train_folds(TrainingConfig.from_json(args.config), cases, read_folds(Path(args.folds), cases),
                              Path(args.out), only=args.only or (), group=group, also_all=args.also_all,
                              bank_folder=Path(args.bank_cache) if args.bank_cache else None)
    finally:
        end_process_group(group)
    for path in written:
        print(f"wrote {path}")
    return 0


def run_clickeval(args: argparse.Namespace) -> int:
    return _click_evaluation(args, _cases(args.dataset), args.method, args.reuse or (), args.only_fold or ())


def _click_evaluation(args: argparse.Namespace, cases: List[Case], method_specs: List[str],
                      reuse: Sequence[str], only_folds: Sequence[int] = ()) -> int:
    """The click evaluation every 2D figure comes from (``training/click_crossval.py``): each method on
    every slice with bleed, settings chosen per fold on the other folds; writes ``table.md``,
    ``records.csv``, ``all_settings.csv`` and ``summary.json`` (what ``ship --metrics`` records);
    with ``only_folds``, on those test folds only (a preview)."""
    from tqdm import tqdm

    folds = read_folds(Path(args.folds), cases)
    only = set(only_folds or range(len(folds)))
    slices = [s for s in evaluation_slices(cases, folds) if s.fold in only]
    out = Path(args.out)
    methods, everything = [], []
    for reused in reuse:  # methods measured earlier on the same folds, with the same code
        for record in read_records_csv(Path(reused).read_text(), ClickRecord):
            everything.append(record)
            if record.method not in methods:
                methods.append(record.method)
    bar = tqdm(desc="clicks", unit="slice", total=None)
    for spec in method_specs:
        name, settings = method_settings(spec, args.engine)
        bar.total = (bar.total or 0) + len(settings) * len(slices)
        records = run_method(name, settings, slices, progress=lambda text: (bar.set_postfix_str(text[-40:]),
                                                                              bar.update(1)))
        everything.extend(records)
        methods.append(name)
    bar.close()
    selected, chosen = select_per_fold(everything, len(folds))
    selected = [r for r in selected if r.fold in only]  # every method on the same slices
    caption = (f"Scan-level {len(folds)}-fold cross-validation on {', '.join(args.dataset)}{_fold_note(only, folds)}: "
               f"{len(slices)} slices, "
               f"{len({s.scan for s in slices})} scans (folds: {args.folds}). Settings of each method chosen per "
               f"fold on the other folds only. Engine {args.engine}; CPU: {cpu_description()}.")
    write_text_atomic(out / "table.md", results_tables(selected, methods, caption))
    write_text_atomic(out / "records.csv", records_csv(selected, ClickRecord))
    write_text_atomic(out / "all_settings.csv", records_csv(everything, ClickRecord))
    summary = {"command": " ".join(sys.argv), "folds_file": args.folds, "datasets": args.dataset,
               "engine": args.engine, "cpu": cpu_description(), "chosen_settings_per_fold": chosen,
               "results": {method: {f"{protocol}, {count} click(s)": summarize(
                   [r for r in selected if r.method == method and r.protocol == protocol and r.clicks == count])
                   for protocol in PROTOCOLS for count in REPORTED_CLICKS} for method in methods}}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print((out / "table.md").read_text())
    return 0


def _fold_note(only: Set[int], folds: Sequence[object]) -> str:
    """Words for a table measured on some folds only (a preview)."""
    return "" if len(only) == len(folds) else f", test folds {', '.join(map(str, sorted(only)))} only"


def _only_fold_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only-fold", type=int, action="append",
                        help="measure only this test fold (repeatable; a preview): reused rows are cut to the same "
                             "folds; a method run here chooses its settings on the other folds measured")


def run_volumeeval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .volume_eval import (VolumeRecord, evaluation_volumes, per_volume_table, run_volume_method, selection_table,
                              summarize_volumes, volume_method_settings, volume_tables)

    if not args.method and not args.reuse and not args.auto:
        raise SystemExit("volumeeval: name a --method to run, --auto, or a --reuse file to tabulate.")
    if args.auto and args.only_fold:
        raise SystemExit("volumeeval: --only-fold previews --method runs; --auto measures every volume.")
    cases = _cases(args.dataset)
    folds = read_folds(Path(args.folds), cases)
    only = set(args.only_fold or range(len(folds)))
    volumes = [v for v in evaluation_volumes(cases, folds)
               if (not args.only or v.name in args.only) and v.fold in only]
    out = Path(args.out)
    if args.auto:
        return _volumeeval_auto(args, cases, folds, out)
    methods, selected, selection, chosen = [], [], [], {}
    for reused in args.reuse or ():  # records.csv of an earlier volumeeval on the same folds
        for record in read_records_csv(Path(reused).read_text(), VolumeRecord):
            if record.fold not in only:
                continue
            selected.append(record)
            if record.method not in methods:
                methods.append(record.method)
    # Every method's settings first: a misspelt one fails before any has run.
    named_settings = [volume_method_settings(spec, args.engine, args.fold_detectors) for spec in args.method or ()]
    bar = tqdm(desc="volumes", unit="volume")
    for name, settings in named_settings:
        bar.total = (bar.total or 0) + len(volumes) * (1 + (len(settings) > 1))
        records, tried, chosen[name] = run_volume_method(name, settings, volumes, len(folds), progress=lambda text: (
            bar.set_postfix_str(text[-40:]), bar.update(1)))
        selected.extend(records)
        selection.extend(tried)
        methods.append(name)
    bar.close()
    caption = (f"Patient-level {len(folds)}-fold cross-validation in 3D on {', '.join(args.dataset)}"
               f"{_fold_note(only, folds)}: "
               f"{len(volumes)} whole CTs with bleed of {len({v.scan for v in volumes})} patients (folds: "
               f"{args.folds}). Settings chosen per fold on the other folds only. Engine {args.engine}; "
               f"CPU: {cpu_description()}.")
    report = volume_tables(selected, methods, caption)
    if selection:
        report += ("\nSettings tried (deepest first click, all volumes; each fold's choice saw only the "
                   "other folds):\n\n" + selection_table(selection))
    for method in methods:
        report += f"\nPer volume, {method}:\n\n" + per_volume_table(selected, method)
    write_text_atomic(out / "table.md", report)
    write_text_atomic(out / "records.csv", records_csv(selected, VolumeRecord))
    write_text_atomic(out / "selection.csv", records_csv(selection, VolumeRecord))
    summary = {"command": " ".join(sys.argv), "folds_file": args.folds, "datasets": args.dataset,
               "engine": args.engine, "cpu": cpu_description(), "chosen_settings_per_fold": chosen,
               "results": {method: {f"{protocol}, {count} click(s)": summarize_volumes(
                   [r for r in selected if r.method == method and r.protocol == protocol and r.clicks == count])
                   for protocol in PROTOCOLS for count in REPORTED_CLICKS} for method in methods}}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(report)
    return 0


def run_sliceceiling(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .slice_ceiling import CeilingRecord, ceiling_table, run_ceiling
    from .volume_eval import evaluation_volumes

    cases = _cases(args.dataset)
    folds = read_folds(Path(args.folds), cases)
    volumes = [v for v in evaluation_volumes(cases, folds) if not args.only or v.name in args.only]
    chosen_records: List[CeilingRecord] = []
    everything: List[CeilingRecord] = []
    bar = tqdm(desc="volumes", unit="volume")
    for spec in args.method:
        name, settings = method_settings(spec, args.engine)
        name += " (the true bleed's box, no click)" if args.truth_box else ""
        bar.total = (bar.total or 0) + len(volumes) * len(settings)
        chosen, tried = run_ceiling(name, settings, volumes, len(folds), progress=lambda text: (
            bar.set_postfix_str(text[-40:]), bar.update(1)), truth_box=args.truth_box)
        chosen_records += chosen
        everything += tried
    bar.close()
    prompt = "The true bleed's box" if args.truth_box else "A click at the bleed's deepest point"
    caption = (f"{prompt} on every slice of the clicked bleed, each slice segmented alone (no propagation), on "
               f"{', '.join(args.dataset)}: {len(volumes)} whole CTs with bleed (folds: {args.folds}; settings chosen "
               f"per fold on the other folds). Engine {args.engine}; CPU: {cpu_description()}.")
    out = Path(args.out)
    write_text_atomic(out / "table.md", ceiling_table(chosen_records, caption))
    write_text_atomic(out / "records.csv", records_csv(chosen_records, CeilingRecord))
    write_text_atomic(out / "all_settings.csv", records_csv(everything, CeilingRecord))
    write_text_atomic(out / "summary.json", json.dumps({"command": " ".join(sys.argv), "folds_file": args.folds,
                                                        "datasets": args.dataset, "engine": args.engine,
                                                        "cpu": cpu_description()}, indent=2) + "\n")
    print((out / "table.md").read_text())
    return 0


def _volumeeval_auto(args: argparse.Namespace, cases, folds, out: Path) -> int:
    """``samihs batch --prompts auto`` on every volume, bleed-free ones included."""
    from tqdm import tqdm

    from SAMIHSLib.interaction.predictor import load_predictor

    from .volume_eval import AutoRecord, auto_table, evaluation_volumes, run_auto_batch

    volumes = [v for v in evaluation_volumes(cases, folds, with_bleed=False) if not args.only or v.name in args.only]
    bar = tqdm(desc="auto batch", unit="volume", total=len(volumes))
    records = run_auto_batch(volumes, load_predictor(args.auto, engine=args.engine),
                             progress=lambda text: (bar.set_postfix_str(text), bar.update(1)))
    bar.close()
    report = auto_table(records, f"`samihs batch --prompts auto` ({args.auto}) on {len(volumes)} whole CTs of "
                                 f"{', '.join(args.dataset)}; engine {args.engine}; CPU: {cpu_description()}.")
    write_text_atomic(out / "auto_table.md", report)
    write_text_atomic(out / "auto_records.csv", records_csv(records, AutoRecord))
    print(report)
    return 0


def run_precision(args: argparse.Namespace) -> int:
    from .precision_comparison import compare_records, write_comparison

    rows, sources = [], {}
    for name, fp32_dir, bf16_dir in args.table:
        rows += compare_records(name, Path(fp32_dir) / "records.csv", Path(bf16_dir) / "records.csv")
        sources[f"{name} fp32"], sources[f"{name} bf16"] = fp32_dir, bf16_dir
    result = write_comparison(rows, Path(args.out), args.model, sources)
    print((Path(args.out) / "comparison.md").read_text())
    return 0 if result["rows"] else 1


def run_detectorcv(args: argparse.Namespace) -> int:
    """Cross-validate the bleed detector by patient; with ``--ship``, train the all-scans one."""
    from SAMIHSLib.models.bleed_detector import DetectorConfig

    from .detector_crossval import (DetectorCrossValidation, band_floor_records, shipped_detector,
                                    summarize_detection, write_results)
    from .detector_training import DetectorTrainingConfig
    from .volume_eval import evaluation_volumes

    recipe_file = json.loads(Path(args.config).read_text())
    config = DetectorConfig.from_dict(recipe_file["network"])
    recipe = DetectorTrainingConfig(**recipe_file["training"])
    cases = _cases(args.dataset)
    folds = read_folds(Path(args.folds), cases)
    volumes = evaluation_volumes(cases, folds, with_bleed=False)
    out, runs = Path(args.out), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    crossval = DetectorCrossValidation(volumes, len(folds), config, recipe)
    saved = runs / "out_of_fold_logits.pt"
    if args.reuse_runs and saved.is_file():
        import torch

        logits = torch.load(saved, weights_only=True)
    else:
        logits = crossval.run(out, runs)
    records, slices = crossval.evaluate(logits)
    floor = summarize_detection(band_floor_records(Path(args.floor).read_text()))
    caption = (f"`samihs batch --prompts auto` on {len(volumes)} whole CTs ({', '.join(args.dataset)}), 5-fold by "
               f"patient ({args.folds}); thresholds per fold chosen on the other folds; detector recipe "
               f"{args.config}; CPU: {cpu_description()}.")
    summary = write_results(out, records, slices, len(folds), floor, caption)
    summary.update({"command": " ".join(sys.argv), "config": args.config, "floor_records": args.floor})
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    if args.seeded:
        _detector_modes(args, volumes, summary, records, floor, caption, len(folds))
    if args.review:
        _region_review(crossval, logits, out, summary, records, floor, caption)
    print((out / "tables.md").read_text())
    if args.ship:
        print("training the all-scans detector")
        network = crossval.train(volumes, out / "train_log_all.csv")
        detector = shipped_detector(network, records, summary, [v.scan for v in volumes], args.folds, config, recipe)
        detector.save(Path(args.ship))
        print(f"wrote {args.ship} ({detector.thresholds.label()})")
    return 0


def _region_review(crossval, logits, out: Path, summary, records, floor, caption: str) -> None:
    """The region review cross-validated on the same out-of-fold logits, beside the thresholds
    (measured, not shipped: docs/automatic-batch.md)."""
    from SAMIHSLib.volume.bleed_detection import logits_to_probability

    from .detector_crossval import detection_records_csv, detection_table, select_per_fold, summarize_detection
    from .region_review_crossval import PIXEL_THRESHOLDS, region_tables, select_per_fold as review_per_fold, \
        review_on_all_folds, tables_csv

    tables = {pixel: [] for pixel in PIXEL_THRESHOLDS}
    for item in (v for v in crossval.volumes if v.name in logits):
        for pixel, table in region_tables(item, logits_to_probability(logits[item.name], item.truth.shape[1:])).items():
            tables[pixel].append(table)
    write_text_atomic(out / "review_regions.csv", tables_csv(tables))
    reviewed, chosen = review_per_fold(tables)
    pixel, review, review_records = review_on_all_folds(tables)
    write_text_atomic(out / "review_records.csv", detection_records_csv(review_records))
    write_text_atomic(out / "review_selected.csv", detection_records_csv(reviewed))
    summary.update({"review_per_fold_setting": chosen, "review": summarize_detection(reviewed),
                    "review_on_all_folds": {"pixel_threshold": pixel, **review.to_dict()}})
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(out / "tables.md", detection_table(
        select_per_fold(records, crossval.folds)[0], floor, summary["slice_auc"], caption,
        [(f"the same + region review (setting and review per fold: {'; '.join(chosen)})", reviewed)]))


def _detector_modes(args: argparse.Namespace, volumes, summary, records, floor, caption: str, folds: int) -> None:
    """The detector's regions as seeds for ``args.seeded``'s click -> propagation, against the
    detector's own regions, chosen per fold on the other folds."""
    from SAMIHSLib.interaction.predictor import load_predictor

    from .detector_crossval import (choose_mode_per_fold, detection_records_csv, detection_table, seeded_records,
                                    select_per_fold)

    out = Path(args.out)
    selected, chosen = select_per_fold(records, folds)
    seeded = seeded_records(volumes, Path(args.runs), chosen, load_predictor(args.seeded, engine=args.engine))
    by_mode, modes = choose_mode_per_fold(selected, seeded, folds)
    write_text_atomic(out / "seeded_records.csv", detection_records_csv(seeded))
    summary.update({"seeded_model": args.seeded, "engine": args.engine, "per_fold_mode": modes})
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(out / "tables.md", detection_table(
        selected, floor, summary["slice_auc"], caption,
        [(f"detector regions as clicks for {args.seeded} (same thresholds)", seeded),
         (f"mode chosen per fold on the other folds ({', '.join(modes)})", by_mode)]))


def run_shiprule(args: argparse.Namespace) -> int:
    from .shipping_rule import RuleTable, checks_markdown, shipping_decision

    tables = [RuleTable(name, Path(records), candidate, baseline) for name, records, candidate, baseline in args.table]
    ships, checks = shipping_decision(tables)
    verdict = "ships: it becomes the default" if ships else "does not ship: lite-base stays the default"
    text = f"# The shipping rule\n\nThe candidate {verdict}.\n\n{checks_markdown(checks)}"
    write_text_atomic(Path(args.out), text)
    print(text)
    return 0


def run_boundarycensus(args: argparse.Namespace) -> int:
    """Per dataset: how many connected bleeds the paper's boundary term leaves without gradient."""
    from .boundary_census import census, component_weights

    report = {spec: census(component_weights(_cases([spec]))) for spec in args.dataset}
    write_text_atomic(Path(args.out), json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


def _add_volume_arguments(parser: argparse.ArgumentParser, method_help: str, method_required: bool) -> None:
    """The options of every command that runs methods on the whole CTs."""
    parser.add_argument("--dataset", action="append", required=True,
                        help="e.g. ct_ich_volumes:../shared/data/ct-ich-volumes")
    parser.add_argument("--folds", required=True, help="fold file covering the volumes' patients")
    parser.add_argument("--method", action="append", required=method_required, default=None if method_required else [],
                        help=method_help)
    parser.add_argument("--engine", default="auto", help="inference engine (exact fp32 engines give the same masks)")
    parser.add_argument("--only", action="append", help="evaluate only this volume (e.g. 049), for a quick look")


def main(argv=None) -> int:
    from SAMIHSLib.cpu_tuning import tune_process_for_inference

    tune_process_for_inference()  # training owns its process
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("train")
    p.add_argument("--config", required=True)
    p.set_defaults(handler=run_train)
    p = commands.add_parser("evaluate", help="one model beside the floor, by clickeval's protocol")
    p.add_argument("--model", default="lite-base", help="a model name or checkpoint (as clickeval's --method)")
    p.add_argument("--dataset", action="append", required=True, help="KIND:ROOT[@PIXEL_MM], e.g. shared_real:../shared/data")
    p.add_argument("--folds", required=True, help="fold file written by `python -m training folds`")
    p.add_argument("--engine", default="torch", help="inference engine (exact fp32 engines give the same masks)")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=run_evaluate)
    p = commands.add_parser("crossval", help="train one model per fold, then evaluate them as clickeval does")
    p.add_argument("--config", required=True)
    p.add_argument("--dataset", action="append", required=True)
    p.add_argument("--folds", required=True, help="fold file written by `python -m training folds`")
    p.add_argument("--runs", required=True, help="where the per-fold models go (RUNS/fold{k}/model.samihs.pt)")
    p.add_argument("--baseline", default="lite-base", help="the method the candidate is compared with")
    p.add_argument("--engine", default="torch", help="inference engine (exact fp32 engines give the same masks)")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=run_crossval)
    p = commands.add_parser("ship")
    p.add_argument("--config", required=True)
    p.add_argument("--dataset", action="append", required=True)
    p.add_argument("--metrics", action="append",
                   help="summary.json of a cross-validation run, recorded in the checkpoint (repeatable)")
    p.add_argument("--trained", help="a model.samihs.pt already trained with --config on --dataset: skip training")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(handler=run_ship)
    p = commands.add_parser("pack", help="write datasets into one .npz (read back as packed:FILE)")
    p.add_argument("--dataset", action="append", required=True)
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(handler=run_pack)
    p = commands.add_parser("folds", help="write fixed cross-validation folds by scan")
    p.add_argument("--dataset", action="append", required=True)
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--extend", help="a fold file whose scans keep their folds; the others are added to them")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(handler=run_folds)
    p = commands.add_parser("foldtrain", help="train one model per fold on the other folds' scans")
    p.add_argument("--config", required=True)
    p.add_argument("--dataset", action="append", required=True)
    p.add_argument("--folds", required=True, help="fold file written by `python -m training folds`")
    p.add_argument("--only", type=int, action="append", help="train only this fold (repeatable)")
    p.add_argument("--bank-cache", metavar="DIR",
                   help="store the frozen encoder's embedding bank here and reuse it when a later call would "
                        "build the same one (staged recipes; several GB per bank)")
    p.add_argument("--also-all", action="store_true",
                   help="then train one model on every scan from the same cache (OUT/all/model.samihs.pt)")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=run_foldtrain)
    p = commands.add_parser("clickeval", help="cross-validated click evaluation of methods on the same folds")
    p.add_argument("--dataset", action="append", required=True)
    p.add_argument("--folds", required=True, help="fold file written by `python -m training folds`")
    p.add_argument("--method", action="append", required=True,
                   help="region | lite-base | lite | lite:alone | CHECKPOINT (with {fold} for per-fold models); "
                        "NAME=SPEC names it in the tables; SPEC@L/W,L/W feeds the model those CT windows (chosen per fold)")
    p.add_argument("--engine", default="torch", help="inference engine (exact fp32 engines give the same masks)")
    p.add_argument("--reuse", action="append",
                   help="all_settings.csv of an earlier run on the same folds: its methods join the tables unrun")
    _only_fold_argument(p)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=run_clickeval)
    p = commands.add_parser("volumeeval", help="cross-validated one click -> 3D evaluation on whole CTs")
    _add_volume_arguments(p, "region | lite-base | lite | CHECKPOINT; SPEC:propagation=NAME,NAME tries those settings",
                          method_required=False)
    p.add_argument("--reuse", action="append", help="records.csv of an earlier volumeeval on the same folds")
    p.add_argument("--fold-detectors", metavar="PATH",
                   help="each fold's bleed detector for SPEC:detector=..., {fold} standing for the fold "
                        "(e.g. runs/bleed_detector/detector_fold{fold}.pt from detectorcv --runs)")
    p.add_argument("--auto", metavar="MODEL",
                   help="run `samihs batch --prompts auto` with MODEL on every volume, bleed-free ones too")
    _only_fold_argument(p)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=run_volumeeval)
    p = commands.add_parser("sliceceiling",
                            help="what propagation can reach at most: a click on every slice of the clicked bleed")
    _add_volume_arguments(p, "the click table's methods: region | lite-base | ...", method_required=True)
    p.add_argument("--truth-box", action="store_true",
                   help="prompt each slice with the true bleed's box instead of a click (models only)")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=run_sliceceiling)
    p = commands.add_parser("precision", help="bf16 against fp32 on every row of evaluation tables")
    p.add_argument("--model", required=True, help="the model both runs evaluated (named in the report)")
    p.add_argument("--table", nargs=3, action="append", required=True, metavar=("NAME", "FP32_RUN", "BF16_RUN"),
                   help="a table's name and the --out folders of its fp32 and bf16 runs (repeatable)")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=run_precision)
    p = commands.add_parser("shiprule", help="does a fine-tuned candidate become the default? (both tables)")
    p.add_argument("--table", nargs=4, action="append", required=True,
                   metavar=("NAME", "RECORDS_CSV", "CANDIDATE", "BASELINE"),
                   help="a table's records and the method names of the candidate and lite-base in it (repeatable)")
    p.add_argument("--out", required=True, help="the decision, as Markdown")
    p.set_defaults(handler=run_shiprule)
    p = commands.add_parser("boundarycensus", help="how many real bleeds the paper's boundary term gives no gradient")
    p.add_argument("--dataset", action="append", required=True, help="e.g. ct_ich_volumes:../shared/data/ct-ich-volumes")
    p.add_argument("--out", required=True, help="a JSON file")
    p.set_defaults(handler=run_boundarycensus)
    p = commands.add_parser("detectorcv", help="cross-validate the automatic bleed detector by patient (and ship it)")
    p.add_argument("--config", required=True, help="the detector recipe, e.g. training/experiments/bleed_detector.json")
    p.add_argument("--dataset", action="append", required=True)
    p.add_argument("--folds", required=True, help="fold file by patient")
    p.add_argument("--floor", required=True, help="auto_records.csv of volumeeval --auto (the band's floor)")
    p.add_argument("--out", required=True)
    p.add_argument("--runs", required=True, help="where the fold detectors and out-of-fold logits go")
    p.add_argument("--ship", help="also train on every volume and write the shipped detector here")
    p.add_argument("--reuse-runs", action="store_true", help="evaluate the out-of-fold logits already in --runs")
    p.add_argument("--seeded", help="also measure the detector's regions as clicks for this model (e.g. lite-base)")
    p.add_argument("--review", action="store_true",
                   help="also cross-validate the region review (a second look at each region; not shipped)")
    p.add_argument("--engine", default="openvino", help="the --seeded model's engine")
    p.set_defaults(handler=run_detectorcv)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
