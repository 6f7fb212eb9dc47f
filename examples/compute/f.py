"""CPU-bound pure Python: multiplies two seeded n×n matrices and returns a checksum.

{"n": 64, "seed": 7} -> {"n": 64, "trace": ..., "checksum": ...}
"""

import random


def matrix(n, rng):
    return [[rng.randint(-9, 9) for _ in range(n)] for _ in range(n)]


def multiply(a, b):
    columns = list(zip(*b))
    return [[sum(x * y for x, y in zip(row, column)) for column in columns] for row in a]


def f(event):
    n = int(event.get("n", 64))
    if not 1 <= n <= 400:
        raise ValueError("n must be between 1 and 400")
    rng = random.Random(event.get("seed", 0))
    product = multiply(matrix(n, rng), matrix(n, rng))
    return {
        "n": n,
        "trace": sum(product[i][i] for i in range(n)),
        "checksum": sum((i + 1) * value for i, row in enumerate(product) for value in row) % 1_000_000_007,
    }
