"""Groups and aggregates records, the kind of reshaping glue functions do.

{"records": [{"dept": "eng", "salary": 10}, ...], "group_by": "dept", "sum": "salary"}
-> {"groups": [{"dept": "eng", "count": 1, "salary": 10, "mean": 10.0}, ...]}  (largest sum first)
"""

from collections import defaultdict


def f(event):
    key, field = event["group_by"], event["sum"]
    totals = defaultdict(lambda: [0, 0])
    for record in event.get("records", []):
        if key not in record:
            raise KeyError(f"record {record!r} has no {key!r}")
        group = totals[record[key]]
        group[0] += 1
        group[1] += record.get(field, 0)
    groups = [
        {key: name, "count": count, field: total, "mean": round(total / count, 6)}
        for name, (count, total) in totals.items()
    ]
    groups.sort(key=lambda group: (-group[field], str(group[key])))
    return {"groups": groups}
