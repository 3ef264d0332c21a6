"""The built-in derivations (recipes over the one engine) and the ways to derive that are not a
name, each with the options it takes: what ``symgrad list`` shows and ``derive --help`` ends
with. Kept free of imports, so the CLI's help can read it without loading the library."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Builtin:
    """A built-in derivation as ``symgrad list`` shows it: what it derives, the options it takes."""

    name: str
    summary: str
    options: tuple[str, ...]


BUILTINS = (
    Builtin("softmax-cross-entropy", "dL/dz of L = cross_entropy(softmax(z), y), down to dz = a - y "
            "(the default); --one-hot K: y = e_K, down to a_j - delta_jK", ("--n", "--no-normalized-labels",
                                                                         "--one-hot")),
    Builtin("softmax-layer", "Z = W A_prev + b with a softmax output over a batch of m examples: "
            "dZ, dW, db, dA_prev", ("--n", "--n-prev", "--m")),
    Builtin("network", "hidden layers A[l] = g(W[l] A[l-1] + b[l]) and an output layer over a batch: "
            "dZ[l], dW[l], db[l] for every layer", ("--hidden", "--generic", "--output-layer", "--sizes")),
)


def builtin(name: str) -> Builtin | None:
    """The built-in derivation called ``name``, if there is one."""
    return next((b for b in BUILTINS if b.name == name), None)


GENERAL = (  # ways to derive that are not a name
    Builtin("--expr LOSS", "any loss in the expression language (with --wrt and --vars)",
            ("--expr", "--wrt", "--vars", "--assume", "--n", "--sizes")),
    Builtin("FILE.toml --identity NAME", "a grad(...)/jacobian(...) identity of an identity file, "
            "ending at its rhs", ("--identity", "--n")),
)


def options_by_derivation() -> str:
    """The lines of ``derive --help`` saying which options go with which derivation."""
    rows = [(b.name, " ".join(b.options)) for b in (*BUILTINS, *GENERAL)]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {options}" for name, options in rows)
