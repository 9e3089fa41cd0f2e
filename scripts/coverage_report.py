"""One coverage line per package of aiecs_tracing (lines and branches), from the combined data.

``make test`` runs it after ``coverage combine``. The term report lists files; this says, per
package, how much of it the suite ran, and with ``--fail-under LINE BRANCH`` exits 1 when a
gated package (core/ and integrations/, where the span paths live) is below either figure.
demo/ is reported but never gated: it is a showcase, exercised by the demo's own tests.

Usage: python scripts/coverage_report.py [--data-file .coverage] [--fail-under 90 80]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "aiecs_tracing"
GATED = ("core", "integrations")


@dataclass(frozen=True)
class PackageCoverage:
    """What one package's files add up to in coverage's JSON totals."""

    name: str
    statements: int
    covered_lines: int
    branches: int
    covered_branches: int

    @property
    def line_percent(self) -> float:
        return 100.0 * self.covered_lines / self.statements if self.statements else 100.0

    @property
    def branch_percent(self) -> float:
        return 100.0 * self.covered_branches / self.branches if self.branches else 100.0

    def line(self) -> str:
        return (
            f"{self.name + '/':<14} lines {self.line_percent:5.1f}% ({self.covered_lines}/{self.statements})"
            f"   branches {self.branch_percent:5.1f}% ({self.covered_branches}/{self.branches})"
        )


def package_names() -> list[str]:
    """The subpackages of aiecs_tracing, gated ones first."""
    found = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    return [name for name in GATED if name in found] + [name for name in found if name not in GATED]


def measure(cov: coverage.Coverage, name: str) -> PackageCoverage:
    """The totals of coverage's JSON report restricted to one package's files."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cov.json_report(outfile=out.name, include=[str(PACKAGE / name / "*")], ignore_errors=True)
        totals = json.loads(Path(out.name).read_text())["totals"]
    return PackageCoverage(
        name=name,
        statements=totals["num_statements"],
        covered_lines=totals["covered_lines"],
        branches=totals.get("num_branches", 0),
        covered_branches=totals.get("covered_branches", 0),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-file", default=str(ROOT / ".coverage"))
    parser.add_argument(
        "--fail-under", nargs=2, type=float, metavar=("LINE", "BRANCH"),
        help=f"exit 1 when {' or '.join(GATED)} is below LINE%% of lines or BRANCH%% of branches",
    )
    args = parser.parse_args(argv)
    cov = coverage.Coverage(data_file=args.data_file)
    cov.load()
    failures = []
    print("coverage per package:")
    for name in package_names():
        result = measure(cov, name)
        print(result.line())
        if args.fail_under and name in GATED:
            line_min, branch_min = args.fail_under
            if result.line_percent < line_min or result.branch_percent < branch_min:
                failures.append(f"{name}/ below {line_min:g}% lines / {branch_min:g}% branches")
    for failure in failures:
        print(f"coverage: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
