"""`harmony <command>`: parses arguments, calls the modules, sets the exit code. No logic lives here.

Exit codes: 0 success, 1 a check failed (gate) or some tasks failed, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from harmony.core.errors import HarmonyError

__all__ = ["main", "build_parser"]

log = logging.getLogger("harmony")

EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_PIPE = 0, 1, 2, 141

#: Library parameter names in error messages, as each command spells them.
_SPELLING = {
    "harmonize": {"mean_only=True": "--mean-only", "eb=False": "--no-eb", "parametric=False": "--nonparametric",
                  "ref_batch": "--ref-batch", "feature_transform": "--transform", "n_splits": "--folds"},
    "run": {"mean_only=True": "harmonization.mean_only = true", "eb=False": "harmonization.eb = false",
            "parametric=False": "harmonization.parametric = false"},
}


def _count(n: int, word: str) -> str:
    """``1 case``, ``2 cases``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _in_cli_words(command: str, message: str) -> str:
    for name, spelled in _SPELLING.get(command, {}).items():
        message = message.replace(name, spelled)
    return message


def _progress(args: argparse.Namespace) -> bool | None:
    """Progress bars on a terminal unless ``--quiet``."""
    return False if args.quiet else None


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``minimum`` (argparse reports anything else, exit 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


#: Output folders a command writes (``args.<dest>`` -> option): checked before any work (one line, exit 2).
_OUTPUT_DIRS = {"out": "--out", "dir": "DIR"}


def _check_paths(args: argparse.Namespace) -> None:
    from harmony.core.files import check_output_dir

    for dest, option in _OUTPUT_DIRS.items():
        if getattr(args, dest, None):
            check_output_dir(getattr(args, dest), option)


def _print_failures(failures, where: Path) -> None:
    from harmony.workflows.failures import failure_summary

    print(f"{failure_summary(failures)}\nall in {where}", file=sys.stderr)


def _add_set(parser: argparse.ArgumentParser, what: str = "experiment config",
             example: str = "experiment.seed=3") -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a value of the {what} by its dotted key (repeatable), e.g. {example}")


def _add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars on a terminal, no progress lines in a log")


def _add_label(parser: argparse.ArgumentParser, default_text: str, default: int | None = None) -> None:
    parser.add_argument("--label", type=_at_least(1), default=default,
                        help=f"mask label of the ROI (default: {default_text})")


# -- harmony validate ---------------------------------------------------------------------------------

def _validate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="experiment config (TOML), or a built-in name such as quickstart")
    _add_set(p)


def _validate(args: argparse.Namespace) -> int:
    from harmony.extraction.adapter import extraction_params
    from harmony.workflows.experiment import load_experiment

    config = load_experiment(args.config, args.overrides)
    extraction_params(config)  # pyradiomics checks the [extraction] settings, as `harmony run` does first
    print(json.dumps(config, indent=2, sort_keys=False))
    return EXIT_OK


# -- harmony versions ---------------------------------------------------------------------------------

def _versions_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of aligned text")


def _versions(args: argparse.Namespace) -> int:
    from harmony.core.manifest import versions

    found = versions()
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        width = max(map(len, found))
        for name, ver in found.items():
            print(f"{name:<{width}}  {ver}")
    return EXIT_OK


# -- harmony extract ----------------------------------------------------------------------------------

def _extract_args(p: argparse.ArgumentParser) -> None:
    from harmony.extraction.settings import EXECUTORS

    p.add_argument("cases", help="cases CSV: case_id,image,mask,site[,covariates...], paths relative to it")
    p.add_argument("--params", required=True, help="pyradiomics parameters (.yaml, .yml, .toml or .json)")
    p.add_argument("--out", required=True, help="run directory (re-running the same command resumes it)")
    _add_label(p, "the parameters' label, or 1")
    p.add_argument("--variants", default=None, help="variants table (Parquet, e.g. from `harmony perturb`); "
                                                    "default: the original images only")
    p.add_argument("--repeats", type=_at_least(1), default=1, help="repeats of every (case, variant) task (default 1)")
    p.add_argument("--executor", choices=EXECUTORS, default="processes", help="where tasks run (default processes)")
    p.add_argument("--workers", type=_at_least(0), default=0, help="worker count (default 0: one per core)")
    p.add_argument("--scheduler", default="", help="Dask scheduler address (default: start a local cluster)")
    p.add_argument("--threads-per-worker", type=_at_least(0), default=0,
                   help="SimpleITK and BLAS threads of each worker (default 0: the cores shared out)")
    p.add_argument("--retry-failed", action="store_true", help="run again the tasks that failed in an earlier run")
    _add_quiet(p)
    _add_set(p, "pyradiomics parameters", "setting.binWidth=24")


def _extract(args: argparse.Namespace) -> int:
    from harmony.core import schema
    from harmony.extraction.taskfiles import FAILURES_NAME
    from harmony.workflows.commands import extract_cases

    result = extract_cases(args.cases, args.params, args.out, overrides=args.overrides, label=args.label,
                           variants_path=args.variants, repeats=args.repeats, executor=args.executor,
                           workers=args.workers, scheduler=args.scheduler, retry_failed=args.retry_failed,
                           progress=_progress(args), threads_per_worker=args.threads_per_worker)
    n_features = result.features[schema.FEATURE].nunique()
    print(f"{result.done} of {result.total} tasks extracted ({result.resumed} from an earlier run), "
          f"{n_features} features each -> {result.out_dir}")
    if result.failed:
        _print_failures(result.failures, result.out_dir / FAILURES_NAME)
        return EXIT_FAILED
    return EXIT_OK


# -- harmony gate -------------------------------------------------------------------------------------

def _gate_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="gate_command", required=True, metavar="SUBCOMMAND")
    for name, help_text in (("baseline", "extract the reference set and store it as a baseline"),
                            ("check", "re-extract the baseline's reference set and compare; exit 1 on a change")):
        s = sub.add_parser(name, help=help_text, description=help_text)
        s.add_argument("config", nargs="?", default="gate",
                       help="experiment config with a [gate] section (default: the built-in 'gate', "
                            "experiments/gate.toml of the examples)")
        if name == "baseline":
            s.add_argument("--out", required=True, help="baseline directory to write")
        else:
            s.add_argument("--baseline", required=True, help="baseline directory from `harmony gate baseline`")
            s.add_argument("--out", default="reports/gate", help="where gate.md, junit.xml and comparison.csv go "
                                                                 "(default: reports/gate)")
        _add_quiet(s)
        _add_set(s)
    s = sub.add_parser("ibsi", help="compare pyradiomics with the IBSI 1 digital-phantom reference values",
                       description="compare pyradiomics with the IBSI 1 digital-phantom reference values")
    s.add_argument("--out", default="reports/ibsi", help="where ibsi_compliance.csv/.md go (default: reports/ibsi)")
    s.add_argument("--ct-phantom", metavar="DIR", default=None,
                   help="the IBSI 1 CT phantom's folder (image.nii.gz, mask.nii.gz; CC BY-NC, not shipped): "
                        "check configurations A-E, plain pyradiomics and IBSI mode side by side")
    s.add_argument("--config", default="all", choices=("A", "B", "C", "D", "E", "all"),
                   help="CT-phantom configuration (default: all)")
    s.add_argument("--no-explain", action="store_true",
                   help="CT phantom: skip the ablation runs that name each failure's processing step")
    s.add_argument("--params", metavar="PARAMS", default=None,
                   help="list the settings of this pyradiomics parameter file that deviate from the IBSI, and "
                        "whether IBSI mode removes each")
    s.add_argument("--filters", action="store_true",
                   help="IBSI 2 filters instead: phase 1 on the digital phantoms (--ibsi2-data), phase 2 on the CT "
                        "phantom (--ct-phantom), plain pyradiomics and harmony's LoG_IBSI/Wavelet_IBSI side by side")
    s.add_argument("--ibsi2-data", metavar="DIR", default=None,
                   help="with --filters: the IBSI 2 reference folder holding phantoms/ and response_maps/ "
                        "(theibsi/data_sets, theibsi/ibsi_2_reference_data; not shipped)")


def _gate(args: argparse.Namespace) -> int:
    from harmony import gate
    from harmony.core import schema
    from harmony.gate import ibsi

    if args.gate_command == "ibsi" and args.filters:
        return _gate_ibsi_filters(args)
    if args.gate_command == "ibsi" and (args.params or args.ct_phantom):
        return _gate_ibsi_ct(args)
    if args.gate_command == "ibsi":
        table = ibsi.ibsi_compliance()
        paths = ibsi.write_compliance(table, args.out)
        failed = table[~table[ibsi.PASS]]
        print(f"IBSI 1 digital phantom: {len(table) - len(failed)} of {len(table)} mapped features agree to "
              f"{ibsi.SIGNIFICANT_DIGITS} significant digits -> {paths[0]}, {paths[1]}")
        for row in failed.to_dict("records"):
            print(f"  {row[schema.FEATURE]} ({row[ibsi.IBSI_TAG]}): {row[schema.REASON]}")
        ibsi_mode = ibsi.ibsi_compliance(standard="ibsi")
        print(f"IBSI mode (extraction.standard = 'ibsi'): {int(ibsi_mode[ibsi.PASS].sum())} of {len(ibsi_mode)} agree")
        return EXIT_OK if ibsi_mode[ibsi.PASS].all() else EXIT_FAILED
    from harmony.workflows.experiment import load_experiment

    config = load_experiment(args.config, args.overrides)
    progress = _progress(args)
    if args.gate_command == "baseline":
        manifest = gate.create_baseline(config, args.out, progress=progress)
        print(f"baseline of {manifest['tasks']['total']} extractions ({manifest['tasks']['failed']} failed) "
              f"-> {args.out}")
        return EXIT_OK
    result = gate.check_baseline(config, args.baseline, progress=progress)
    paths = gate.write_check_report(result, args.out)
    print(gate.format_table(result), file=sys.stderr if not result.passed else sys.stdout)
    print(f"report: {paths['markdown']}, {paths['junit']}")
    return EXIT_OK if result.passed else EXIT_FAILED


# -- harmony phantoms ---------------------------------------------------------------------------------

def _phantoms_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="cohort spec (TOML), e.g. phantoms/cohort_demo.toml")
    p.add_argument("--out", required=True, help="output directory (images/, cases.csv, cohort.json, manifest)")
    p.add_argument("--seed", type=_at_least(0), default=None, help="override the spec's cohort.seed")
    _add_quiet(p)
    _add_set(p, "cohort spec", "cohort.subjects=12")


def _phantoms(args: argparse.Namespace) -> int:
    from harmony.core import schema
    from harmony.phantoms.specs import SUBJECT
    from harmony.workflows.commands import simulate_phantoms

    cases = simulate_phantoms(args.spec, args.out, overrides=args.overrides, seed=args.seed, progress=_progress(args))
    print(f"{_count(len(cases), 'case')} of {_count(cases[SUBJECT].nunique(), 'subject')} on "
          f"{_count(cases[schema.SITE].nunique(), 'scanner')} "
          f"-> {Path(args.out) / 'cases.csv'}")
    return EXIT_OK


# -- harmony reliability ------------------------------------------------------------------------------

def _reliability_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("features", help="features table (Parquet), e.g. from `harmony extract`")
    p.add_argument("--variants", default=None,
                   help="variants table (Parquet) giving each variant's kind (default: variants.parquet beside "
                        "the features, if any; otherwise all variants are one kind, 'all')")
    p.add_argument("--config", default=None, help="experiment config: its [reliability] section and experiment.seed")
    p.add_argument("--out", required=True, help="output directory")
    _add_quiet(p)
    _add_set(p, "[reliability] settings (or of --config)", "reliability.judge_on=estimate")


def _reliability(args: argparse.Namespace) -> int:
    from harmony.core import schema
    from harmony.reliability.verdicts import summary_counts
    from harmony.workflows.assess import OUTPUTS, load_settings, run_reliability

    settings, seed = load_settings(args.config, args.overrides)
    results = run_reliability(args.features, args.out, variants_path=args.variants, settings=settings, seed=seed,
                              progress=_progress(args))
    verdicts = results["verdicts"]
    print(f"{settings['icc']} categories per perturbation (judged on {settings['judge_on']}):")
    print(summary_counts(results["reliability"], settings).to_string())
    print(f"{int(verdicts[schema.STABLE].sum())} of {len(verdicts)} features stable "
          f"(verdict on {', '.join(settings['verdict'])}) -> {Path(args.out) / OUTPUTS['verdicts']}")
    return EXIT_OK


def _gate_ibsi_ct(args: argparse.Namespace) -> int:
    """``gate ibsi --params`` (the user's deviations) and ``--ct-phantom`` (configurations A-E)."""
    from harmony.core.files import write_text
    from harmony.extraction.params import load_params
    from harmony.gate import ibsi_ct, ibsi_params

    if args.params:
        table = ibsi_params.params_deviations(load_params(args.params))
        path = write_text(Path(args.out) / "ibsi_params.md", ibsi_params.deviations_markdown(table, args.params))
        removed = int(table["removed_by_ibsi_mode"].sum())
        print(f"{args.params}: {len(table)} deviation(s) from the IBSI; IBSI mode removes {removed} -> {path}")
        for r in table.to_dict("records"):
            verdict = "removed" if r["removed_by_ibsi_mode"] else "kept"
            print(f"  {r['setting']} = {r['value']}: {r['deviation']} [IBSI mode: {verdict}: {r['ibsi_mode']}]")
    if not args.ct_phantom:
        return EXIT_OK
    phantom = ibsi_ct.load_ct_phantom(args.ct_phantom)
    configs = ibsi_ct.CT_CONFIGS if args.config == "all" else (args.config,)
    import pandas as pd

    table = pd.concat([ibsi_ct.ct_compliance(phantom, c, explain=not args.no_explain) for c in configs],
                      ignore_index=True)
    paths = ibsi_ct.write_ct_compliance(table, args.out)
    print(ibsi_ct.ct_summary(table).to_string(index=False))
    failed = table[(table[ibsi_ct.STANDARD] == "ibsi") & ~table["pass"]]
    for r in failed.to_dict("records"):
        print(f"  IBSI mode, configuration {r['config']}: {r['feature']} ({r['ibsi_tag']}): {r['reason']}",
              file=sys.stderr)
    print(f"report: {paths['markdown']}, {paths['csv']}, {paths['junit']}")
    return EXIT_FAILED if len(failed) else EXIT_OK


def _gate_ibsi_filters(args: argparse.Namespace) -> int:
    """``gate ibsi --filters``: IBSI 2 phase 1 (digital phantoms) and phase 2 (CT phantom), both implementations."""
    import pandas as pd

    from harmony.core.errors import ConfigError
    from harmony.gate import ibsi2

    if not args.ibsi2_data and not args.ct_phantom:
        raise ConfigError("gate ibsi --filters: pass --ibsi2-data DIR (phase 1) and/or --ct-phantom DIR (phase 2)")
    tables = []
    if args.ibsi2_data:
        tables.append(ibsi2.phase1_compliance(args.ibsi2_data))
    else:
        print("IBSI 2 phase 1 not run: pass --ibsi2-data DIR (the folder holding phantoms/ and response_maps/)")
    if args.ct_phantom:
        tables.append(ibsi2.phase2_compliance(args.ct_phantom))
    else:
        print("IBSI 2 phase 2 not run: pass --ct-phantom DIR (the IBSI 1 CT phantom's folder)")
    table = pd.concat(tables, ignore_index=True)
    paths = ibsi2.write_filter_compliance(table, args.out)
    summary = ibsi2.filter_summary(table)
    for phase, part in summary.groupby("phase", sort=False):
        counts = ", ".join(f"{side} {int(rows['pass'].sum())} of {len(rows)}"
                           for side, rows in part.groupby("implementation", sort=False))
        print(f"IBSI 2 phase {phase}: tests passed: {counts}")
    failed = summary[(summary["implementation"] == "harmony") & ~summary["pass"]]
    for r in failed.to_dict("records"):
        print(f"  harmony, phase {r['phase']}, test {r['test']}: {r['reason']}", file=sys.stderr)
    print(f"report: {paths['markdown']}, {paths['csv']}, {paths['junit']}")
    return EXIT_FAILED if len(failed) else EXIT_OK


# -- harmony harmonize -------------------------------------------------------------------------------

#: ``harmony harmonize`` options of one method: flag -> (method(s), option key, help).
_METHOD_FLAGS = {
    "--smooth": ("gam", "smooth", "comma-separated covariates with smooth (spline) effects, e.g. age"),
    "--pc-variance": ("covbat", "pc_variance", "harmonize the principal component scores explaining this (0.95)"),
    "--n-pc": ("covbat", "n_pc", "the number of principal component scores to harmonize"),
    "--batch-columns": ("nested/gmm", "batch_columns", "comma-separated cases columns of the batch variables"),
    "--order": ("nested/gmm", "order", "given (--batch-columns order) or optimise (default)"),
    "--min-fraction": ("gmm", "min_fraction", "smallest share of subjects in each hidden batch (0.25)"),
}


def _method_options(args: argparse.Namespace) -> dict:
    """The ``--method``'s options from its flags, typed as its config table (validated there); others refused."""
    options = {}
    for flag, (methods, key, _) in _METHOD_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is None:
            continue
        if args.method not in methods.split("/"):
            raise HarmonyError(f"{flag} applies to --method {methods.replace('/', ' or ')}, not {args.method}")
        if key in ("smooth", "batch_columns"):
            value = [c.strip() for c in value.split(",") if c.strip()]
        elif key in ("pc_variance", "min_fraction", "n_pc"):
            try:
                value = int(value) if key == "n_pc" else float(value)
            except ValueError:
                raise HarmonyError(f"{flag}: not a number: {value!r}") from None
        options[key] = value
    return options


def _harmonize_args(p: argparse.ArgumentParser) -> None:
    from harmony.core.schema import MISSING_POLICIES
    from harmony.harmonize.settings import METHODS, TRANSFORMS

    p.add_argument("features", help="features table: harmony's long table (from `harmony extract`), or a wide "
                                    "CSV/TSV/Parquet with one row per subject (give --id)")
    p.add_argument("--id", dest="id_column", default=None,
                   help="wide table: its subject id column; the batch and covariates are columns of the same file")
    p.add_argument("--missing", default="stop", choices=MISSING_POLICIES,
                   help="wide table: on missing or non-numeric cells stop and name them (default), drop the "
                        "incomplete feature columns, or drop the incomplete subjects")
    p.add_argument("--feature-columns", default=None,
                   help="wide table: comma-separated feature columns (default: every numeric column but the id, "
                        "batch and covariates; diagnostics_* columns are skipped)")
    p.add_argument("--batch", default=None, help="batch column (default: site)")
    p.add_argument("--cases", default=None, help="long table: cases table (.csv or .parquet) with covariates and "
                                                 "truth_* columns")
    p.add_argument("--covariates", default=None, help="comma-separated columns whose effects are preserved")
    p.add_argument("--ref-batch", default=None, help="batch left unchanged; the others are mapped onto it")
    p.add_argument("--transform", default=None, choices=TRANSFORMS,
                   help="per-feature transform applied before ComBat and inverted after")
    p.add_argument("--nonparametric", action="store_true", help="non-parametric empirical Bayes priors")
    p.add_argument("--no-eb", action="store_true", help="no empirical Bayes shrinkage")
    p.add_argument("--mean-only", action="store_true", help="adjust locations only, not scales")
    p.add_argument("--min-batch-size", type=_at_least(2), default=None, help="warn for a batch smaller than this (default 10)")
    p.add_argument("--method", default="combat", choices=METHODS, help="the harmonization method (default combat)")
    for flag, (method, _, what) in _METHOD_FLAGS.items():
        p.add_argument(flag, default=None, help=f"--method {method}: {what}")
    p.add_argument("--model", default=None, help="apply this saved model (model.json) instead of fitting one")
    p.add_argument("--folds", type=_at_least(2), default=5, help="cross-validation folds of the site classifier")
    p.add_argument("--seed", type=_at_least(0), default=0, help="random_state of the classifier's fold split")
    p.add_argument("--out", required=True, help="output directory (tables, model.json and report.html)")
    _add_quiet(p)


def _harmonize(args: argparse.Namespace) -> int:
    from harmony.core import schema
    from harmony.workflows.commands import harmonize_table

    covariates = [c.strip() for c in args.covariates.split(",") if c.strip()] if args.covariates else None
    fit_only = {"--ref-batch": args.ref_batch, "--transform": args.transform, "--nonparametric": args.nonparametric,
                "--no-eb": args.no_eb, "--mean-only": args.mean_only}
    given = [flag for flag, value in fit_only.items() if value]
    method_options = _method_options(args)
    given += [flag for flag in _METHOD_FLAGS if getattr(args, flag[2:].replace("-", "_")) is not None]
    if args.model and (given or args.method != "combat" or args.min_batch_size is not None):
        raise HarmonyError(f"--model {args.model}: the saved model fixes the method and its options; drop "
                           f"{given or ['--method' if args.method != 'combat' else '--min-batch-size']}")
    options = None if args.model else {"parametric": not args.nonparametric, "eb": not args.no_eb,
                                       "mean_only": args.mean_only, "ref_batch": args.ref_batch,
                                       "feature_transform": args.transform}
    if options is not None and args.min_batch_size is not None:
        options["min_batch_size"] = args.min_batch_size
    feature_columns = [c.strip() for c in args.feature_columns.split(",") if c.strip()] if args.feature_columns \
        else None
    metrics = harmonize_table(args.features, args.out, cases_path=args.cases, batch=args.batch,
                              covariates=covariates, model_path=args.model, combat_options=options,
                              n_splits=args.folds, random_state=args.seed, id_column=args.id_column,
                              missing=args.missing, feature_columns=feature_columns,
                              method=args.method, method_options=method_options or None)
    if "wide" in metrics:
        print(f"{args.features}: {metrics['wide'].summary()}")
    summary = metrics["summary"].pivot(index=schema.METRIC, columns=schema.STAGE, values=schema.ESTIMATE)
    print(summary[[c for c in ("raw", "combat") if c in summary.columns]].round(3).to_string())
    n_cases = metrics["harmonized"][schema.CASE_ID].nunique()
    where = metrics.get("wide_path", Path(args.out))
    print(f"harmonized {_count(n_cases, 'case')} -> {where} (report: {Path(args.out) / 'report.html'})")
    return EXIT_OK


# -- harmony perturb ----------------------------------------------------------------------------------

def _perturb_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("cases", help="cases CSV: case_id,image,mask,site[,covariates...], paths relative to it")
    p.add_argument("design", help="perturbation design (TOML: [[grid]] and [[draw]] tables)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=_at_least(0), default=0,
                   help="experiment seed the design's draws and spec seeds come from")
    p.add_argument("--params", default=None, help="pyradiomics parameters: bin settings equal to them are identities")
    _add_label(p, "1", 1)
    p.add_argument("--save-images", action="store_true", help="write each variant's image and mask as NRRD")
    p.add_argument("--full-images", action="store_true", help="save whole images, not the mask's neighbourhood")
    _add_quiet(p)
    _add_set(p, "design", 'description="a variant"')


def _perturb(args: argparse.Namespace) -> int:
    from harmony.workflows.commands import perturb_study

    result = perturb_study(args.cases, args.design, args.out, seed=args.seed, params_path=args.params,
                           label=args.label, save_images=args.save_images, full_images=args.full_images,
                           overrides=args.overrides, progress=_progress(args))
    print(f"{_count(len(result.variants), 'variant')} x {_count(len(result.cases), 'case')} -> "
          f"{result.out_dir / result.VARIANTS}")
    if len(result.failures):
        _print_failures(result.failures, result.out_dir / result.FAILURES)
        return EXIT_FAILED
    return EXIT_OK


# -- harmony run --------------------------------------------------------------------------------------

def _run_args(p: argparse.ArgumentParser) -> None:
    from harmony.extraction.settings import EXECUTORS

    p.add_argument("config", help="experiment config (TOML), e.g. experiments/quickstart.toml")
    p.add_argument("--out", help="run directory (default: the config's experiment.out, or reports/<name>)")
    p.add_argument("--executor", choices=EXECUTORS, help="override engine.executor")
    p.add_argument("--workers", type=_at_least(0), help="override engine.workers (0: one per core)")
    _add_label(p, "the config's cases.label, or 1")
    _add_quiet(p)
    _add_set(p)


def _run(args: argparse.Namespace) -> int:
    from harmony.workflows.run import run_config

    overrides = list(args.overrides)
    if args.executor:
        overrides.append(f"engine.executor={args.executor}")
    if args.workers is not None:
        overrides.append(f"engine.workers={args.workers}")
    if args.label is not None:
        overrides.append(f"cases.label={args.label}")
    summary = run_config(args.config, overrides, out=args.out, progress=_progress(args))
    for stage, status in summary.stages.items():
        print(f"{stage:<14} {status}")
    tasks = summary.tasks
    stable = "" if summary.n_stable is None else f", {summary.n_stable} stable"
    print(f"{_count(summary.n_cases, 'case')} x {_count(summary.n_variants, 'variant')}: {tasks.get('done', 0)} of "
          f"{tasks.get('total', 0)} extractions done, {summary.n_features} features{stable} "
          f"({summary.seconds:.0f} s) -> {summary.report or summary.run_dir}")
    if tasks.get("failed"):
        from harmony.core import schema
        from harmony.core.files import read_table
        from harmony.workflows.layout import FILES

        failures_path = summary.run_dir / FILES["failures"]
        _print_failures(read_table(failures_path, schema.FAILURES), failures_path)
        return EXIT_FAILED
    return EXIT_OK


# -- harmony examples -------------------------------------------------------------------------------

#: How each kind of built-in example is used by name.
_EXAMPLE_USES = {
    "experiment": "harmony run NAME, harmony validate NAME",
    "design": "harmony perturb CASES NAME",
    "params": "harmony extract CASES --params NAME",
    "cohort": "harmony phantoms NAME --out DIR",
    "scanner": "a cohort's scanners.profiles, load_scanner(NAME)",
}


def _examples_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="examples_command", required=True, metavar="SUBCOMMAND")
    sub.add_parser("list", help="the built-in names of each kind, with what they are",
                   description="the built-in names of each kind, with what they are")
    s = sub.add_parser("copy", help="copy experiments/ and phantoms/ into a folder to edit them",
                       description="copy experiments/ and phantoms/ into a folder to edit them (never overwrites)")
    s.add_argument("dir", help="destination folder (created if needed; no file in it is overwritten)")


def _examples(args: argparse.Namespace) -> int:
    from harmony.core import resources

    if args.examples_command == "list":
        for kind, examples in resources.catalog().items():
            print(f"{kind} ({_EXAMPLE_USES[kind]}):")
            width = max(map(len, examples), default=0)
            for name, description in examples.items():
                print(f"  {name:<{width}}  {description}")
        return EXIT_OK
    written = resources.copy_examples(args.dir)
    for path in written:
        print(path)
    dest = Path(args.dir)
    print(f"{len(written)} files -> {dest / 'experiments'}, {dest / 'phantoms'}")
    print(f"run one: harmony run {dest / 'experiments' / 'quickstart.toml'}")
    print("bare names in them (scanner profiles such as ct_sharp_1mm) still mean the built-ins; to use an edited "
          "copy write its path, relative to the file (../phantoms/scanners/ct_sharp_1mm.toml in an experiment)")
    return EXIT_OK


# -- harmony export -----------------------------------------------------------------------------------

def _export_args(p: argparse.ArgumentParser) -> None:
    from harmony.core.schema import TABLE_FORMATS

    p.add_argument("run_dir", help="a folder written by `harmony run`")
    p.add_argument("--out", default=None, help="where to write (default: RUN_DIR/export)")
    p.add_argument("--format", dest="fmt", default="parquet", choices=TABLE_FORMATS, help="table format")


def _export(args: argparse.Namespace) -> int:
    from harmony.workflows.export import export_run

    written = export_run(args.run_dir, args.out, fmt=args.fmt)
    table = written["model_table"]
    print(f"{len(written['features'])} variant table(s) and {table.name} -> {table.parent}")
    return EXIT_OK


# -- harmony cases -----------------------------------------------------------------------------------

def _cases_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="cases_command", required=True, metavar="SUBCOMMAND")
    help_text = ("walk a DICOM tree (headers only), pair each image series with its RTSTRUCTs and SEGs, and write "
                 "a cases CSV (one row per patient and ROI) and a table of the files left out")
    s = sub.add_parser("scan", help=help_text, description=help_text)
    s.add_argument("dir", help="the DICOM folder to walk")
    s.add_argument("--out", dest="out_csv", default="cases.csv",
                   help="cases CSV to write (default cases.csv); the problems go beside it as <name>_problems.csv")
    s.add_argument("--roi", default=None, help="keep the ROIs (segment labels) with this name or fully matching this "
                                               "case-insensitive regular expression, e.g. 'GTV.*' (default: all)")
    s.add_argument("--site-tag", default="Manufacturer",
                   help="DICOM keyword(s) whose values make the site, joined by '+', e.g. "
                        "Manufacturer+ManufacturerModelName (default Manufacturer)")
    s.add_argument("--covariates", default=None, help="comma-separated DICOM keywords read as covariates, e.g. "
                                                      "PatientAge,PatientSex (ages in years, numbers as numbers)")
    _add_quiet(s)


def _cases(args: argparse.Namespace) -> int:
    from harmony.core import schema
    from harmony.core.dicom.scan import FILE, PROBLEM, scan_dicom, write_scan

    site_tags = [t.strip() for t in args.site_tag.split("+") if t.strip()]
    covariates = [c.strip() for c in args.covariates.split(",") if c.strip()] if args.covariates else []
    result = scan_dicom(args.dir, roi=args.roi, site_tags=site_tags, covariates=covariates, progress=_progress(args))
    cases_path, problems_path = write_scan(result, args.out_csv)
    cases, problems = result.cases, result.problems
    if cases.empty:
        raise HarmonyError(f"{args.dir}: no image series paired with an RTSTRUCT or SEG ({len(problems)} file(s) left "
                           f"out, see {problems_path})")
    print(f"{len(cases)} cases of {cases[schema.PATIENT_ID].nunique()} patients on {cases[schema.SITE].nunique()} "
          f"sites -> {cases_path}")
    if len(problems):
        counts = ", ".join(f"{n} {kind}" for kind, n in problems[PROBLEM].value_counts().items())
        print(f"{len(problems)} file(s) left out ({counts}) -> {problems_path}", file=sys.stderr)
        for row in problems.head(10).to_dict("records"):
            print(f"  {row[PROBLEM]}: {row[FILE]}: {row['detail']}", file=sys.stderr)
    return EXIT_OK


# -- harmony harmonizers ------------------------------------------------------------------------------

def _split_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _harmonizers_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="harmonizers_command", required=True, metavar="SUBCOMMAND")
    compare = sub.add_parser("compare", help="benchmark every harmonizer on simulated cohorts with known truth",
                             description="benchmark every harmonizer on simulated cohorts with known truth")
    compare.add_argument("--matrix", default="default", choices=("default", "large"),
                         help="scenario matrix: default (minutes on 2 cores) or large (for a cluster)")
    compare.add_argument("--scenarios", default=None, help="comma-separated scenarios of the matrix (default: all)")
    like = sub.add_parser("like", help="which harmonizer, and how many subjects per site, for data like yours",
                          description="fit a generative model to your features table and benchmark the "
                                      "harmonizers on cohorts simulated like it, with a sample-size curve")
    like.add_argument("features", help="features table (.parquet or .csv), long (feature/value rows) or wide")
    like.add_argument("--cases", default=None, help="cases table with the site and covariates, joined on case_id")
    like.add_argument("--site", default="site", help="site column (default site)")
    like.add_argument("--covariates", default=None, help="comma-separated covariate columns")
    like.add_argument("--curve-replicates", type=_at_least(1), default=5, help="seeds per point of the sample-size curve")
    for s in (compare, like):
        s.add_argument("--methods", default=None, help="comma-separated methods (default: all installed)")
        s.add_argument("--replicates", type=_at_least(1), default=3, help="seeds per scenario (default 3)")
        s.add_argument("--seed", type=_at_least(0), default=0, help="the run's seed")
        s.add_argument("--executor", default="processes", choices=("serial", "processes", "dask"))
        s.add_argument("--workers", type=_at_least(0), default=2, help="worker processes (default 2)")
        s.add_argument("--scheduler", default="", help="Dask scheduler address (default: a local cluster)")
        s.add_argument("--neuroharmonize-python", default=None, metavar="PATH",
                       help="a Python that has neuroHarmonize (it pins numpy < 2), to benchmark it too "
                            "(default: $HARMONY_NEUROHARMONIZE_PYTHON)")
        _add_quiet(s)
        s.add_argument("--out", required=True, help="output directory (re-run to resume)")


def _harmonizers(args: argparse.Namespace) -> int:
    from harmony.workflows.benchmark import compare_harmonizers, like_my_data

    common = {"methods": _split_list(args.methods), "replicates": args.replicates, "seed": args.seed,
              "executor": args.executor, "workers": args.workers, "scheduler": args.scheduler,
              "progress": _progress(args), "neuroharmonize_python": args.neuroharmonize_python}
    if args.harmonizers_command == "compare":
        result = compare_harmonizers(args.out, matrix=args.matrix, scenarios=_split_list(args.scenarios), **common)
    else:
        result = like_my_data(args.features, args.out, cases_path=args.cases, site=args.site,
                              covariates=_split_list(args.covariates), curve_replicates=args.curve_replicates,
                              **common)
    columns = ["rank", "method", "score", "cohorts", "site_accuracy_excess", "ad_fraction", "truth_correlation"]
    print(result["ranked"][columns].round(3).to_string(index=False))
    print(result["recommendation"])
    if "needed" in result:
        print(result["needed"])
    print(f"report -> {Path(args.out) / 'report.html'}")
    return EXIT_OK


# -- the command table --------------------------------------------------------------------------------

Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

COMMANDS: list[Command] = [
    ("validate", "check an experiment config and print it resolved", _validate_args, _validate),
    ("extract", "extract pyradiomics features of a cases CSV", _extract_args, _extract),
    ("versions", "print the versions that go into every manifest", _versions_args, _versions),
    ("phantoms", "simulate a multi-scanner phantom cohort with known truth", _phantoms_args, _phantoms),
    ("perturb", "expand a perturbation design into variants and make them for every case", _perturb_args, _perturb),
    ("gate", "extractor-change gate (baseline, check) and IBSI compliance (ibsi)", _gate_args, _gate),
    ("reliability", "ICC, CCC and CoV of every feature per perturbation kind; stable features", _reliability_args,
     _reliability),
    ("harmonize", "ComBat-harmonize features across sites and measure the site effect", _harmonize_args, _harmonize),
    ("harmonizers", "benchmark the harmonizers on simulated cohorts (compare), or on cohorts like your data (like)",
     _harmonizers_args, _harmonizers),
    ("run", "run an experiment end to end: cohort, perturbations, extraction, reliability, harmonization, report",
     _run_args, _run),
    ("export", "write a run's features as wide tables: per variant, and the stable harmonized model table",
     _export_args, _export),
    ("cases", "make a cases CSV from a DICOM folder (scan)", _cases_args, _cases),
    ("examples", "list the built-in examples, or copy them into a folder to edit", _examples_args, _examples),
]


def build_parser() -> argparse.ArgumentParser:
    """The ``harmony`` argument parser: global options and one subcommand per entry of ``COMMANDS``.

    Returns
    -------
    argparse.ArgumentParser
        Parses ``--version``, ``-v/--verbose`` and a required ``COMMAND``; each subcommand's namespace holds
        ``run``, the function that executes it and returns the exit code.
    """
    from harmony import __version__

    parser = argparse.ArgumentParser(
        prog="harmony", description="Benchmark radiomic feature reproducibility and harmonize across scanners.")
    parser.add_argument("--version", action="version", version=f"harmony {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, add_args, run in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(run=run)
    return parser


def _configure_logging(verbosity: int, quiet: bool) -> Callable[[], None]:
    """Set up logging; return what undoes the progress logger's set-up (``main`` may be called again)."""
    from harmony.core.progress import PROGRESS_LOGGER

    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("harmony").setLevel(level)
    # in a log (stderr not a terminal) stage and progress lines, timed; on a terminal the bars say it
    progress = logging.getLogger(PROGRESS_LOGGER)
    before = progress.level, progress.propagate
    progress.setLevel(logging.WARNING if quiet or sys.stderr.isatty() else min(level, logging.INFO))
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    progress.addHandler(handler)
    progress.propagate = False

    def undo() -> None:
        progress.removeHandler(handler)
        progress.level, progress.propagate = before

    return undo


def _report_warnings(command: str, log) -> None:
    for line in log.lines():
        print(f"harmony {command}: warning: {line}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``harmony <command>``: parse ``argv``, configure logging, call the command.

    A :class:`~harmony.core.errors.HarmonyError` is printed as one line on stderr, not raised.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        The exit code: 0 success, 1 a check failed (gate) or some tasks failed, 2 bad input (usage errors
        exit 2 from argparse), 130 interrupted, 141 standard output closed early (``| head``). Warnings raised
        meanwhile are printed once each after the command, in plain words (:mod:`harmony.core.notices`).
    """
    from harmony.core.notices import collect_warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    undo = _configure_logging(args.verbose, getattr(args, "quiet", False))
    with collect_warnings() as log:
        try:
            _check_paths(args)
            code = args.run(args)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
        except HarmonyError as exc:
            code = EXIT_ERROR
            print(f"harmony {args.command}: error: {_in_cli_words(args.command, str(exc))}", file=sys.stderr)
        except KeyboardInterrupt:
            code = 130
            print(f"harmony {args.command}: interrupted; finished work is kept, re-run to resume", file=sys.stderr)
        except BrokenPipeError:  # `harmony validate ... | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = EXIT_PIPE
        finally:
            undo()
    if code != EXIT_PIPE:
        _report_warnings(args.command, log)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
