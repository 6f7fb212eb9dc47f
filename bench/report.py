"""Turn a pytest-benchmark JSON file into the markdown table bench/RESULTS.md
uses: p50 and p99 from the raw rounds, and each row's p50 against the
group's reference (REFERENCES, or else the group's first result).

Usage: python bench/report.py BENCHMARK.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REFERENCES = {"test_restore_to_first_result", "test_warm_call"}


def percentile(sorted_data: list[float], fraction: float) -> float:
    return sorted_data[min(len(sorted_data) - 1, int(len(sorted_data) * fraction))]


def main() -> int:
    document = json.loads(Path(sys.argv[1]).read_text())
    machine = document["machine_info"]
    print(f"{machine['cpu'].get('brand_raw', machine['machine'])}, {machine['cpu'].get('count', '?')} cores, "
          f"Python {machine['python_version']}\n")
    print("| group | benchmark | rounds | p50 µs | p99 µs | p50 ratio |")
    print("|---|---|---|---|---|---|")
    benchmarks = sorted(document["benchmarks"], key=lambda bench: (bench["group"], bench["name"] not in REFERENCES))
    reference: dict[str, float] = {}
    for bench in benchmarks:
        data = sorted(bench["stats"]["data"])
        p50, p99 = percentile(data, 0.5) * 1e6, percentile(data, 0.99) * 1e6
        group = bench["group"]
        reference.setdefault(group, p50)
        print(f"| {group} | {bench['name']} | {len(data)} | {p50:,.1f} | {p99:,.1f} | {p50 / reference[group]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
