"""Word counts of a large text by map/reduce: split into chunks, count each
chunk with the `wordcount` function in parallel instances
(`wasmlambda_guest.map`), and merge the counts.

{"text": "...", "chunks": 64} -> {"total": N, "distinct": M, "top": [[word, n], ...]}
"""

from collections import Counter

from wasmlambda_guest import map as map_calls


def f(event):
    words = event["text"].split()
    chunks = max(1, min(int(event.get("chunks", 64)), 64))
    size = -(-len(words) // chunks) or 1
    pieces = [" ".join(words[i:i + size]) for i in range(0, len(words), size)]
    counts = Counter()
    for partial in map_calls("wordcount", [{"text": piece, "top": None} for piece in pieces]):
        counts.update(dict(partial["top"]))
    return {"total": sum(counts.values()), "distinct": len(counts), "top": counts.most_common(event.get("top", 10))}
