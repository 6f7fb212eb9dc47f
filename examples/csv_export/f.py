"""A streamed CSV export: rows are generated and sent as they are produced,
so the client starts receiving at once and the sandbox never holds the
whole file.  Rows go out in batches of 500 (one HTTP chunk each): a chunk
per row would cost a host call per row.
"""

from wasmlambda_guest import context

BATCH = 500


def f(event):
    rows = min(int(context.query.get("rows", 10_000)), 1_000_000)
    context.response.headers["content-type"] = "text/csv; charset=utf-8"
    context.response.headers["content-disposition"] = 'attachment; filename="export.csv"'
    yield "id,name,square\r\n"
    for start in range(0, rows, BATCH):
        yield "".join(f"{i},item-{i},{i * i}\r\n" for i in range(start, min(start + BATCH, rows)))
