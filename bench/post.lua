-- wrk script: POST a small JSON event (used by bench/load.py --wrk)
wrk.method = "POST"
wrk.body = '{"name": "alice"}'
wrk.headers["Content-Type"] = "application/json"
