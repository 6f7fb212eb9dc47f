"""Counts words: {"text": "a b a"} -> {"total": 3, "distinct": 2, "top": [["a", 2], ["b", 1]]}."""

import re
from collections import Counter

WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def f(event):
    words = [word.lower() for word in WORD.findall(event.get("text", ""))]
    counts = Counter(words)
    top = event.get("top", 10)
    return {"total": len(words), "distinct": len(counts), "top": counts.most_common(top)}
