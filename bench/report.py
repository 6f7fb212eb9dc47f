"""Turn a pytest-benchmark JSON file into the markdown table bench/RESULTS.md
uses: p50 and p99 from the raw rounds, and each row's p50 against the
group's reference: the library or pure-Python baseline where the group has
one (h11, wasmtime-py, [python]), else REFERENCES, else its first result.

Usage: python bench/report.py BENCHMARK.json                 (prints the table)
       python bench/report.py --write RESULTS.md PART.md ...  (puts the parts, as the "latest run"
                                                               section, between the markers in RESULTS.md)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REFERENCES = {"test_restore_to_first_result", "test_warm_call"}


def _rank(name: str) -> int:
    """Lower sorts first; the first row of a group is its reference."""
    if "h11" in name or "wasmtime-py" in name:
        return 0
    if "[python]" in name:
        return 1
    return 2 if name in REFERENCES else 3


def percentile(sorted_data: list[float], fraction: float) -> float:
    return sorted_data[min(len(sorted_data) - 1, int(len(sorted_data) * fraction))]


START, END = "<!-- make bench: start -->", "<!-- make bench: end -->"


def write(results: Path, parts: list[Path]) -> None:
    text = results.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{results} has no {START} ... {END} section")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = "\n\n".join(part.read_text().strip() for part in parts)
    section = f"{START}\n## Latest `make bench` ({stamp})\n\n{body}\n{END}"
    results.write_text(text[:text.index(START)] + section + text[text.index(END) + len(END):])


def main() -> int:
    if sys.argv[1] == "--write":
        write(Path(sys.argv[2]), [Path(part) for part in sys.argv[3:]])
        return 0
    document = json.loads(Path(sys.argv[1]).read_text())
    machine = document["machine_info"]
    print(f"{machine['cpu'].get('brand_raw', machine['machine'])}, {machine['cpu'].get('count', '?')} cores, "
          f"Python {machine['python_version']}\n")
    print("| group | benchmark | rounds | p50 µs | p99 µs | p50 ratio |")
    print("|---|---|---|---|---|---|")
    benchmarks = sorted(document["benchmarks"], key=lambda bench: (bench["group"], _rank(bench["name"])))
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
