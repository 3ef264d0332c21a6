"""The loss zoo's table (derivations/losses.toml): for each entry, derive its gradient as
``symgrad derive derivations/losses.toml --identity NAME`` does (the lhs's loss, by its variable,
ending at the file's rhs), check every step, and print one Markdown row per entry and size:
module, expression, steps, proven, wall time, and what it is checked against.

Each row's time is the wall time of deriving and checking that entry at that size, in this one
process (symgrad and SymPy imported once, before the first row; no result cache is involved).
Run:  python bench/zoo_table.py                      (n = 3 and symbolic n where the file lists it)
      python bench/zoo_table.py --sizes 3 --only HuberLoss,FocalLoss
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from symgrad.derivation.engine import derive_problem, problem_from_identity  # noqa: E402
from symgrad.identity_file import SYMBOLIC, load_file  # noqa: E402
from symgrad.verify import check_derivation  # noqa: E402

# what tests/test_losses.py compares each entry's derived gradient with (at n = 3, in every region)
REFERENCES = "jax.grad (float64) + finite differences"


def loss_text(identity) -> str:
    """The loss of ``grad(LOSS, x)``, with the variable: ``LOSS`` by ``x``."""
    inner, wrt = identity.lhs[len("grad("):].rsplit(",", 1)
    return f"`{inner.strip()}` by {wrt.strip().rstrip(')')}"


def row(identity, size) -> tuple:
    started = time.perf_counter()
    try:
        derivation = check_derivation(derive_problem(problem_from_identity(identity, size)))
    except Exception as error:  # a refusal is a row too, never a crash of the table
        return (identity.name, loss_text(identity), str(size), "—", f"refused: {error}",
                f"{time.perf_counter() - started:.1f} s", "—")
    seconds = time.perf_counter() - started
    unproven = [s for s in derivation.steps if not s.check.proven]
    proven = "all" if not unproven else f"NOT: {len(unproven)} not proven ({unproven[0].title})"
    checked = "every step exact + numeric" + ("; " + REFERENCES if size != SYMBOLIC else "")
    return (identity.name, loss_text(identity), str(size), str(len(derivation.steps)), proven,
            f"{seconds:.1f} s", checked)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", default=str(ROOT / "derivations" / "losses.toml"))
    parser.add_argument("--sizes", default="3,symbolic",
                        help="comma-separated sizes, each used where the file lists it (default 3,symbolic)")
    parser.add_argument("--only", default="", help="comma-separated entry names")
    args = parser.parse_args(argv)
    wanted = [s if s == SYMBOLIC else int(s) for s in args.sizes.split(",")]
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    header = ("module", "expression", "n", "steps", "proven", "time", "checked against")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" if h in ("steps", "time") else "---" for h in header) + "|")
    failures = 0
    total = time.perf_counter()
    for identity in load_file(Path(args.file)):
        if only and identity.name not in only:
            continue
        for size in wanted:
            if size not in identity.sizes:
                continue
            cells = row(identity, size)
            failures += cells[4] != "all"
            print("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |", flush=True)
    print(f"\n{failures} rows not proven; total {time.perf_counter() - total:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
