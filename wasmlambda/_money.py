"""Money: an integer number of pico-dollars (p$ = 1e-12 USD), and how to show it.

Its own module so that the command line can print a price without loading
the kernel (and with it Wasmtime).
"""

from __future__ import annotations

__all__ = ["PICO_PER_DOLLAR", "dollars"]

PICO_PER_DOLLAR = 10**12


def dollars(pusd: int) -> str:
    """An exact decimal rendering of a pico-dollar amount: 941 -> '0.000000000941'."""
    sign = "-" if pusd < 0 else ""
    whole, fraction = divmod(abs(pusd), PICO_PER_DOLLAR)
    return f"{sign}{whole}.{fraction:012d}"
