"""`harmony <command>`: parses arguments, calls the modules, sets the exit code. No logic lives here.

Exit codes: 0 success, 1 a check failed (gate) or some tasks failed, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from harmony.core.errors import HarmonyError

__all__ = ["main", "build_parser"]

log = logging.getLogger("harmony")

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


def _progress(args: argparse.Namespace) -> bool | None:
    """Progress bars on a terminal unless ``--quiet``."""
    return False if args.quiet else None


@contextmanager
def _warnings_once(command: str) -> Iterator[None]:
    """Print each distinct warning raised inside once, in plain words (not Python's file:line form)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for hidden in (DeprecationWarning, PendingDeprecationWarning):  # hidden by Python's defaults, here too
            warnings.simplefilter("ignore", hidden)
        try:
            yield
        finally:
            for message in dict.fromkeys(str(w.message) for w in caught):
                print(f"harmony {command}: warning: {message}", file=sys.stderr)


def _add_set(parser: argparse.ArgumentParser, what: str = "config") -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a {what} value by its dotted key (repeatable), e.g. experiment.seed=3")


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
    p.add_argument("--label", type=int, default=None, help="mask label (default: the parameters' label, or 1)")
    p.add_argument("--variants", default=None, help="variants table (Parquet, e.g. from `harmony perturb`); "
                                                    "default: the original images only")
    p.add_argument("--repeats", type=int, default=1, help="repeats of every (case, variant) task (default 1)")
    p.add_argument("--executor", choices=EXECUTORS, default="processes", help="where tasks run (default processes)")
    p.add_argument("--workers", type=int, default=0, help="worker count (default 0: one per core)")
    p.add_argument("--scheduler", default="", help="Dask scheduler address (default: start a local cluster)")
    p.add_argument("--retry-failed", action="store_true", help="run again the tasks that failed in an earlier run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_set(p, "pyradiomics parameter (e.g. setting.binWidth=24)")


def _extract(args: argparse.Namespace) -> int:
    from harmony.core import schema
    from harmony.extraction.taskfiles import FAILURES_NAME
    from harmony.workflows.commands import extract_cases

    result = extract_cases(args.cases, args.params, args.out, overrides=args.overrides, label=args.label,
                           variants_path=args.variants, repeats=args.repeats, executor=args.executor,
                           workers=args.workers, scheduler=args.scheduler, retry_failed=args.retry_failed,
                           progress=_progress(args))
    n_features = result.features[schema.FEATURE].nunique()
    print(f"{result.done} of {result.total} tasks extracted ({result.resumed} from an earlier run), "
          f"{n_features} features each -> {result.out_dir}")
    if result.failed:
        print(f"{result.failed} task(s) failed; see {result.out_dir / FAILURES_NAME}", file=sys.stderr)
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
        s.add_argument("--quiet", action="store_true", help="no progress bar")
        _add_set(s)
    s = sub.add_parser("ibsi", help="compare pyradiomics with the IBSI 1 digital-phantom reference values",
                       description="compare pyradiomics with the IBSI 1 digital-phantom reference values")
    s.add_argument("--out", default="reports/ibsi", help="where ibsi_compliance.csv/.md go (default: reports/ibsi)")


def _gate(args: argparse.Namespace) -> int:
    from harmony import gate
    from harmony.core import schema
    from harmony.gate import ibsi

    if args.gate_command == "ibsi":
        table = ibsi.ibsi_compliance()
        paths = ibsi.write_compliance(table, args.out)
        failed = table[~table[ibsi.PASS]]
        print(f"IBSI 1 digital phantom: {len(table) - len(failed)} of {len(table)} mapped features agree to "
              f"{ibsi.SIGNIFICANT_DIGITS} significant digits -> {paths[0]}, {paths[1]}")
        for row in failed.to_dict("records"):
            print(f"  {row[schema.FEATURE]} ({row[ibsi.IBSI_TAG]}): {row[schema.REASON]}")
        return EXIT_OK
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
    p.add_argument("--seed", type=int, default=None, help="override the spec's cohort.seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_set(p, "cohort spec value (e.g. cohort.subjects=12)")


def _phantoms(args: argparse.Namespace) -> int:
    from harmony.core import schema
    from harmony.phantoms.specs import SUBJECT
    from harmony.workflows.commands import simulate_phantoms

    cases = simulate_phantoms(args.spec, args.out, overrides=args.overrides, seed=args.seed, progress=_progress(args))
    print(f"{len(cases)} cases of {cases[SUBJECT].nunique()} subjects on {cases[schema.SITE].nunique()} scanners "
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_set(p, "setting (e.g. reliability.icc=ICC(C,1), reliability.judge_on=estimate)")


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
    from harmony.harmonize.settings import METHODS, TRANSFORMS

    p.add_argument("features", help="features table (Parquet), e.g. from `harmony extract`")
    p.add_argument("--batch", default=None, help="batch column of the cases table (default: the features' site)")
    p.add_argument("--cases", default=None, help="cases table (.csv or .parquet) with covariates and truth_* columns")
    p.add_argument("--covariates", default=None, help="comma-separated cases columns whose effects are preserved")
    p.add_argument("--ref-batch", default=None, help="batch left unchanged; the others are mapped onto it")
    p.add_argument("--transform", default=None, choices=TRANSFORMS,
                   help="per-feature transform applied before ComBat and inverted after")
    p.add_argument("--nonparametric", action="store_true", help="non-parametric empirical Bayes priors")
    p.add_argument("--no-eb", action="store_true", help="no empirical Bayes shrinkage")
    p.add_argument("--mean-only", action="store_true", help="adjust locations only, not scales")
    p.add_argument("--min-batch-size", type=int, default=None, help="warn for a batch smaller than this (default 10)")
    p.add_argument("--method", default="combat", choices=METHODS, help="the harmonization method (default combat)")
    for flag, (method, _, what) in _METHOD_FLAGS.items():
        p.add_argument(flag, default=None, help=f"--method {method}: {what}")
    p.add_argument("--model", default=None, help="apply this saved model (model.json) instead of fitting one")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds of the site classifier")
    p.add_argument("--seed", type=int, default=0, help="random_state of the classifier's fold split")
    p.add_argument("--out", required=True, help="output directory")


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
    with _warnings_once("harmonize"):
        metrics = harmonize_table(args.features, args.out, cases_path=args.cases, batch=args.batch or schema.SITE,
                                  covariates=covariates, model_path=args.model, combat_options=options,
                                  n_splits=args.folds, random_state=args.seed,
                                  method=args.method, method_options=method_options or None)
    summary = metrics["summary"].pivot(index=schema.METRIC, columns=schema.STAGE, values=schema.ESTIMATE)
    print(summary[[c for c in ("raw", "combat") if c in summary.columns]].round(3).to_string())
    n_cases = metrics["harmonized"][schema.CASE_ID].nunique()
    print(f"harmonized {n_cases} cases -> {Path(args.out)}")
    return EXIT_OK


# -- harmony perturb ----------------------------------------------------------------------------------

def _perturb_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("cases", help="cases CSV: case_id,image,mask,site[,covariates...], paths relative to it")
    p.add_argument("design", help="perturbation design (TOML: [[grid]] and [[draw]] tables)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="experiment seed the design's draws and spec seeds come from")
    p.add_argument("--params", default=None, help="pyradiomics parameters: bin settings equal to them are identities")
    p.add_argument("--label", type=int, default=1, help="mask label of the ROI (default 1)")
    p.add_argument("--save-images", action="store_true", help="write each variant's image and mask as NRRD")
    p.add_argument("--full-images", action="store_true", help="save whole images, not the mask's neighbourhood")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_set(p, "design")


def _perturb(args: argparse.Namespace) -> int:
    from harmony.workflows.commands import perturb_study

    result = perturb_study(args.cases, args.design, args.out, seed=args.seed, params_path=args.params,
                           label=args.label, save_images=args.save_images, full_images=args.full_images,
                           overrides=args.overrides, progress=_progress(args))
    print(f"{len(result.variants)} variants x {len(result.cases)} cases -> {result.out_dir / result.VARIANTS}")
    if len(result.failures):
        print(f"{len(result.failures)} variant(s) could not be made for some case; see "
              f"{result.out_dir / result.FAILURES}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# -- harmony run --------------------------------------------------------------------------------------

def _run_args(p: argparse.ArgumentParser) -> None:
    from harmony.extraction.settings import EXECUTORS

    p.add_argument("config", help="experiment config (TOML), e.g. experiments/quickstart.toml")
    p.add_argument("--out", help="run directory (default: the config's experiment.out, or reports/<name>)")
    p.add_argument("--executor", choices=EXECUTORS, help="override engine.executor")
    p.add_argument("--workers", type=int, help="override engine.workers (0: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_set(p)


def _run(args: argparse.Namespace) -> int:
    from harmony.workflows.run import run_config

    overrides = list(args.overrides)
    if args.executor:
        overrides.append(f"engine.executor={args.executor}")
    if args.workers is not None:
        overrides.append(f"engine.workers={args.workers}")
    with _warnings_once("run"):
        summary = run_config(args.config, overrides, out=args.out, progress=_progress(args))
    for stage, status in summary.stages.items():
        print(f"{stage:<14} {status}")
    tasks = summary.tasks
    stable = "" if summary.n_stable is None else f", {summary.n_stable} stable"
    print(f"{summary.n_cases} cases x {summary.n_variants} variants: {tasks.get('done', 0)} of "
          f"{tasks.get('total', 0)} extractions done, {summary.n_features} features{stable} "
          f"({summary.seconds:.0f} s) -> {summary.report or summary.run_dir}")
    if tasks.get("failed"):
        print(f"{tasks['failed']} task(s) failed; see the report's failures section", file=sys.stderr)
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
    like.add_argument("--curve-replicates", type=int, default=5, help="seeds per point of the sample-size curve")
    for s in (compare, like):
        s.add_argument("--methods", default=None, help="comma-separated methods (default: all installed)")
        s.add_argument("--replicates", type=int, default=3, help="seeds per scenario (default 3)")
        s.add_argument("--seed", type=int, default=0, help="the run's seed")
        s.add_argument("--executor", default="processes", choices=("serial", "processes", "dask"))
        s.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
        s.add_argument("--scheduler", default="", help="Dask scheduler address (default: a local cluster)")
        s.add_argument("--quiet", action="store_true", help="no progress bar")
        s.add_argument("--out", required=True, help="output directory (re-run to resume)")


def _harmonizers(args: argparse.Namespace) -> int:
    from harmony.workflows.benchmark import compare_harmonizers, like_my_data

    common = {"methods": _split_list(args.methods), "replicates": args.replicates, "seed": args.seed,
              "executor": args.executor, "workers": args.workers, "scheduler": args.scheduler,
              "progress": _progress(args)}
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


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("harmony").setLevel(level)


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
        exit 2 from argparse), 130 interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return args.run(args)
    except HarmonyError as exc:
        print(f"harmony {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"harmony {args.command}: interrupted; finished work is kept, re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
