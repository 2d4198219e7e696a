"""`harmony <command>`: parses arguments, calls the modules, sets the exit code. No logic lives here.

Exit codes: 0 success, 1 a check failed (gate) or some tasks failed, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from harmony.errors import HarmonyError

log = logging.getLogger("harmony")

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


def _add_set(parser: argparse.ArgumentParser, what: str = "config") -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a {what} value by its dotted key (repeatable), e.g. experiment.seed=3")


# -- harmony validate ---------------------------------------------------------------------------------

def _validate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="experiment config (TOML)")
    _add_set(p)


def _validate(args: argparse.Namespace) -> int:
    from harmony.config import load_experiment

    config = load_experiment(args.config, args.overrides)
    print(json.dumps(config, indent=2, sort_keys=False))
    return EXIT_OK


# -- harmony versions ---------------------------------------------------------------------------------

def _versions_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of aligned text")


def _versions(args: argparse.Namespace) -> int:
    from harmony.io import versions

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
    p.add_argument("cases", help="cases CSV: case_id,image,mask,site[,covariates...], paths relative to it")
    p.add_argument("--params", required=True, help="pyradiomics parameters (.yaml, .yml, .toml or .json)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--label", type=int, default=None, help="mask label (default: the parameters' label, or 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_set(p, "pyradiomics parameter (e.g. setting.binWidth=24)")


def _extract(args: argparse.Namespace) -> int:
    from harmony import schema
    from harmony.cases import load_cases
    from harmony.config import apply_overrides
    from harmony.extract import extract_cases, load_params, make_extractor
    from harmony.io import build_manifest, now_utc, stable_hash, write_manifest, write_table

    started = now_utc()
    params, _ = apply_overrides(load_params(args.params), args.overrides)
    extractor = make_extractor(params, source=args.params)  # fail on bad settings before reading any image
    label = args.label if args.label is not None else int(extractor.settings.get("label", 1))
    cases = load_cases(args.cases, label=label)
    features, failures, diagnostics = extract_cases(cases, params, label=label,
                                                    progress=False if args.quiet else None)
    out = Path(args.out)
    write_table(features, out / "features.parquet", schema.FEATURES)
    write_table(failures, out / "failures.parquet", schema.FAILURES)
    manifest = build_manifest(
        command="extract", config={"params": params, "label": label, "cases": str(Path(args.cases).resolve())},
        started=started, tasks={"total": len(cases), "done": len(cases) - len(failures), "failed": len(failures)},
        settings_hash=stable_hash(params, length=64), diagnostics=diagnostics,
    )
    write_manifest(out, manifest)
    n_features = features[schema.FEATURE].nunique()
    log.info("wrote %s", out)
    print(f"{len(cases) - len(failures)} of {len(cases)} cases extracted, {n_features} features each -> {out}")
    if len(failures):
        print(f"{len(failures)} case(s) failed; see {out / 'failures.parquet'}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# -- the command table --------------------------------------------------------------------------------

Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

COMMANDS: list[Command] = [
    ("validate", "check an experiment config and print it resolved", _validate_args, _validate),
    ("extract", "extract pyradiomics features of a cases CSV", _extract_args, _extract),
    ("versions", "print the versions that go into every manifest", _versions_args, _versions),
]


def build_parser() -> argparse.ArgumentParser:
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
