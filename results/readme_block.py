"""The README's reference-results table, generated from the committed report (never typed by hand).

    python results/readme_block.py [results/cifar10-cpu]    # prints the Markdown block

README.md carries this block between `<!-- results:cifar10-cpu -->` and `<!-- /results -->`;
tests/test_reference_results.py regenerates it and fails if the README's copy differs, so the
numbers a newcomer reads are the numbers in the committed CSVs.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "results" / "cifar10-cpu"
BEGIN, END = "<!-- results:cifar10-cpu -->", "<!-- /results -->"
PUBLISHED_REL = 8.72  # % (Tiny ImageNet, VOneResNet18: biological vs uniform; the 2023 study)
ORDER = ("biological", "unif1", "unif2", "unif3", "baseline")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _pct(x: str) -> str:
    return f"{100 * float(x):.1f}"


def _signed(x: str) -> str:
    return f"{100 * float(x):+.2f}%"


def variant_table(folder: Path) -> list[str]:
    rows = {(r["variant"], r["metric"]): r for name in ("variants.csv", "clean.csv")
            for r in _rows(folder / name)}
    out = ["| variant | n seeds | clean accuracy, % (95% CI) | corruption accuracy, % (95% CI) |",
           "|---|---|---|---|"]
    for variant in ORDER:
        clean, corr = rows.get((variant, "clean_acc")), rows.get((variant, "corruption_acc"))
        if corr is None:
            continue
        cells = []
        for r in (clean, corr):
            if r is None or not r["ci_lo"]:
                cells.append("n/a" if r is None else f"{_pct(r['mean'])} (no interval: n < 3)")
            else:
                cells.append(f"{_pct(r['mean'])} ({_pct(r['ci_lo'])} to {_pct(r['ci_hi'])})")
        out.append(f"| {variant} | {corr['n']} | {cells[0]} | {cells[1]} |")
    return out


def holm(p: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment over the comparisons shown (family-wise error)."""
    names = sorted(p, key=p.get)  # type: ignore[arg-type]
    out: dict[str, float] = {}
    running = 0.0
    for i, name in enumerate(names):
        running = max(running, min(1.0, (len(names) - i) * p[name]))
        out[name] = running
    return out


def relative_lines(folder: Path) -> list[str]:
    out = ["| biological vs | pairs | corruption accuracy: relative difference (95% CI) | p (paired t, Holm) |"
           " clean accuracy: relative difference (95% CI) |",
           "|---|---|---|---|---|"]
    rows = _rows(folder / "relative.csv")
    by = {(r["metric"], r["other"]): r for r in rows if r["reference"] == "biological"}
    adjusted = holm({o: float(r["p"]) for (m, o), r in by.items() if m == "corruption_acc" and r["p"]})
    for other in ORDER[1:]:
        corr, clean = by.get(("corruption_acc", other)), by.get(("clean_acc", other))
        if corr is None:
            continue

        def cell(r: dict[str, str] | None) -> str:
            if r is None:
                return "n/a"
            if not r["ci_lo"]:
                return f"{_signed(r['rel_diff'])} (no interval)"
            return f"{_signed(r['rel_diff'])} ({_signed(r['ci_lo'])} to {_signed(r['ci_hi'])})"

        p = f"{adjusted[other]:.2g}" if other in adjusted else "n/a"
        out.append(f"| {other} | {corr['n_pairs'] or '-'} | {cell(corr)} | {p} | {cell(clean)} |")
    out.append(f"| published (Tiny ImageNet, VOneResNet18, biological vs uniform) | | +{PUBLISHED_REL:.2f}% | | |")
    return out


def block(folder: Path = DEFAULT) -> str:
    lines = [BEGIN, *variant_table(folder), "", *relative_lines(folder), END]
    return "\n".join(lines)


if __name__ == "__main__":
    print(block(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT))
