"""What OpenLambda users deploy, deployed unchanged: ol.yaml, WSGI and Flask apps,
any method and path, environment and secrets, and OpenLambda's own client.

The Flask test vendors flask from PyPI (MarkupSafe built from its source);
everything else runs offline.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ..conftest import EXAMPLES, FunctionFactory
from .conftest import Reply, WorkerProcess
from .test_cli import cli

pytestmark = pytest.mark.e2e


def call(worker: WorkerProcess, method: str, path: str, body: bytes | str | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    return worker.request(method, path, body, headers=headers, admin=False)


def folder(root: Path, name: str, files: dict[str, str]) -> Path:
    directory = root / name
    for filename, content in files.items():
        path = directory / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return directory


def test_flask_app_as_openlambda_deploys_it(worker: WorkerProcess) -> None:
    deployed = cli(worker, "deploy", str(EXAMPLES / "flask_app"))
    assert deployed.returncode == 0, deployed.stderr
    assert "markupsafe" in deployed.stderr.lower() and "import cleanly in the sandbox" in deployed.stderr

    page = call(worker, "GET", "/run/flask_app/?name=Ada&name=Alan")
    assert page.status == 200, page.body
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert b"<h1>Hello, Ada, Alan!</h1>" in page.body
    assert b'<a href="/run/flask_app/">' in page.body  # url_for knows where the app is mounted
    assert int(page.headers["x-wasmlambda-cost-pusd"]) > 0 and "x-request-id" in page.headers

    missing = call(worker, "GET", "/run/flask_app/no/such/page")
    assert missing.status == 404 and b"<h1>Nothing at /no/such/page</h1>" in missing.body  # the app's own 404

    echoed = call(worker, "POST", "/run/flask_app/echo?lang=en&x=1", "not JSON at all",
                  headers={"Content-Type": "text/plain"})
    assert echoed.status == 201
    assert echoed.json() == {"text": "not JSON at all", "length": 15, "query": {"lang": "en", "x": "1"},
                             "content_type": "text/plain"}

    refused = call(worker, "DELETE", "/run/flask_app/")
    assert refused.status == 405 and refused.headers["allow"] == "GET, HEAD, POST"

    stats = json.loads(call(worker, "GET", "/stats").body)
    assert stats["pull-package.cnt"] >= 7  # flask and its six dependencies, new to this worker's cache


def test_wsgi_app_gets_pep_3333_environ_and_answers_any_bytes(worker: WorkerProcess) -> None:
    assert worker.deploy("wsgi_echo", EXAMPLES / "wsgi_echo").status == 201
    reply = call(worker, "PUT", "/run/wsgi_echo/a/b%20c?x=1&y=2", b"payload",
                 headers={"Content-Type": "text/plain", "User-Agent": "tests"})
    assert reply.status == 200 and reply.headers["x-echo"] == "yes"
    assert reply.json() == {"method": "PUT", "script_name": "/run/wsgi_echo", "path_info": "/a/b c",
                            "query_string": "x=1&y=2", "content_type": "text/plain", "body": "payload",
                            "user_agent": "tests", "python": reply.json()["python"]}
    binary = bytes(range(256)) * 64  # NULs, invalid UTF-8: bytes in, the same bytes out
    raw = call(worker, "POST", "/run/wsgi_echo/raw", binary, headers={"Content-Type": "image/png"})
    assert (raw.status, raw.headers["content-type"], raw.body) == (200, "image/png", binary)
    # wsgi.errors lands in the call's logs
    logs = worker.request("GET", f"/logs/wsgi_echo?request_id={raw.headers['x-request-id']}").json()["lines"]
    assert [line["line"] for line in logs] == [f"echoing {len(binary)} bytes"]
    # A WSGI app is served over HTTP only: a nested invoke() says so.
    root = Path(worker.data_dir).parent
    caller = folder(root, "caller", {"f.py": "from wasmlambda_guest import invoke\n\n"
                                             "def f(event):\n    return invoke('wsgi_echo', {})\n"})
    assert worker.deploy("caller", caller).status == 201
    nested = worker.run("caller", None)
    assert nested.status == 502 and "is a web app: call it over HTTP" in nested.error["message"]


def test_f_handlers_take_any_method_path_and_an_empty_body(worker: WorkerProcess,
                                                           make_function: FunctionFactory) -> None:
    code = make_function("where", "from wasmlambda_guest import context\n\ndef f(event):\n"
                                  "    return [context.method, context.path, context.query, event]\n")
    assert worker.deploy("where", code).status == 201
    assert call(worker, "GET", "/run/where/a/b?k=v").json() == ["GET", "/run/where/a/b", {"k": "v"}, None]
    assert call(worker, "DELETE", "/run/where").json() == ["DELETE", "/run/where", {}, None]
    assert call(worker, "PATCH", "/runLambda/where/x", "[1]").json() == ["PATCH", "/runLambda/where/x", {}, [1]]
    head = call(worker, "HEAD", "/run/where/x")
    assert (head.status, head.body) == (200, b"")
    not_json = call(worker, "POST", "/run/where", "plain text")
    assert not_json.status == 400 and "not valid JSON" in not_json.error["message"]  # f(event) takes JSON


def test_ol_yaml_environment_methods_entry_file_and_fresh_sandboxes(worker: WorkerProcess, tmp_path: Path) -> None:
    code = folder(tmp_path, "olfn", {
        "main.py": "import os\n\ncalls = 0\nGREETING = os.environ['GREETING']  # set before the import\n\n"
                   "def f(event):\n    global calls\n    calls += 1\n"
                   "    return {'greeting': GREETING, 'mode': os.environ.get('MODE'), 'calls': calls}\n",
        "ol.yaml": "triggers:\n  http:\n    - method: POST\n  cron:\n    - schedule: '* * * * *'\n"
                   "environment:\n  OL_ENTRY_FILE: main.py\n  GREETING: bonjour\n  MODE: ol\n"
                   "reuse-sandbox: false\n",
        "wasmlambda.toml": '[env]\nMODE = "toml wins"\n',
    })
    deployed = worker.deploy("olfn", code)
    assert deployed.status == 201
    assert deployed.json()["warnings"] == ["ol.yaml: cron triggers are not supported by this worker and were ignored"]
    assert deployed.json()["isolation"] == "fresh"
    for _ in range(2):
        reply = call(worker, "POST", "/run/olfn", "{}")
        assert reply.json() == {"greeting": "bonjour", "mode": "toml wins", "calls": 1}  # a fresh sandbox each time
        assert reply.headers["x-wasmlambda-start"] == "cold"
    refused = call(worker, "GET", "/run/olfn")
    assert refused.status == 405 and refused.headers["allow"] == "POST"


def test_redeploying_serves_the_new_code_at_once(worker: WorkerProcess, tmp_path: Path) -> None:
    for version in ("one", "two", "three"):
        code = folder(tmp_path / version, "app", {
            "f.py": f"def app(environ, start_response):\n    start_response('200 OK', [])\n"
                    f"    return [b'{version}']\n"})
        assert worker.deploy("app", code).status == 201
        assert call(worker, "GET", "/run/app/").body == version.encode()


def test_secrets_reach_the_handler_and_nothing_else(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    secret = "wl-secret-9f27c1d0e4b3"
    code = make_function("vault", "import os\n\nAT_IMPORT = os.environ.get('API_TOKEN')\n\ndef f(event):\n"
                                  "    print('called')\n    token = os.environ.get('API_TOKEN')\n"
                                  "    return {'matches': token == event, 'at_import': AT_IMPORT}\n")
    assert worker.deploy("vault", code).status == 201
    assert worker.run("vault", secret).json() == {"matches": False, "at_import": None}
    answers = [cli(worker, "secrets", "set", "vault", "API_TOKEN", stdin=secret + "\n"),
               cli(worker, "secrets", "ls", "vault"), cli(worker, "deploy", str(code))]
    assert all(answer.returncode == 0 for answer in answers), [answer.stderr for answer in answers]
    assert answers[1].stdout == "API_TOKEN\n"
    for _ in range(2):  # a cold start (the redeploy), then a warm one
        assert worker.run("vault", secret).json() == {"matches": True, "at_import": None}  # never in the snapshot
    responses = [worker.request("GET", path).body for path in
                 ("/registry", "/registry/vault", "/secrets/vault", "/logs/vault", "/stats", "/billing", "/metrics")]
    outputs = [answer.stdout + answer.stderr for answer in answers]
    assert not [text for text in [*responses, *outputs] if secret.encode() in (text if isinstance(text, bytes)
                                                                                else text.encode())]
    holding = [path for path in worker.data_dir.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]
    assert holding == [worker.data_dir / "secrets.json"]
    assert secret not in worker.log_path.read_text()  # nor in the worker's own log
    assert (worker.data_dir / "secrets.json").stat().st_mode & 0o777 == 0o600
    removed = cli(worker, "secrets", "rm", "vault", "API_TOKEN")
    assert removed.returncode == 0, removed.stderr
    assert worker.run("vault", secret).json()["matches"] is False
    unauthorized = call(worker, "PUT", "/secrets/vault/API_TOKEN", "x")
    assert unauthorized.status == 401
    bad = worker.request("PUT", "/secrets/vault/1BAD", "x")
    assert bad.status == 400 and "invalid secret name" in bad.error["message"]


def test_functions_share_one_copy_of_their_vendored_packages(worker: WorkerProcess, tmp_path: Path) -> None:
    library = {"vendor/shared_lib/__init__.py": "VALUE = 42\n" + "# padding\n" * 500,
               "vendor/shared_lib-1.0.dist-info/RECORD": "shared_lib/__init__.py,,\n"}
    for name in ("first", "second"):
        code = folder(tmp_path, name, {"f.py": "import shared_lib\n\ndef f(event):\n    return shared_lib.VALUE\n",
                                       **library})
        assert worker.deploy(name, code).status == 201
        assert worker.run(name).json() == 42
    copies = list(worker.data_dir.glob("store/*/code/vendor/shared_lib/__init__.py"))
    assert len(copies) == 2 and copies[0].stat().st_ino == copies[1].stat().st_ino  # one file on disk
    packages = json.loads(worker.request("GET", "/stats").body)["packages"]
    assert packages["pull-package.cnt"] == 1 and packages["package-cache-hit.cnt"] == 1


class OpenLambdaClient:
    """How OpenLambda's Python client talks to a worker (its run, get_statistics and
    check_status): JSON in the body of POST /run/<name>, GET /stats and GET /status,
    anything but 200 an error.  Written here from its documented behaviour."""

    def __init__(self, address: str) -> None:
        self.address = address

    def _request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        host, _, port = self.address.partition(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            connection.request(method, path, body=body)
            response = connection.getresponse()
            answer = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"{method} {path} answered {response.status}: {answer!r}")
        return answer

    def run(self, name: str, args: Any) -> Any:
        return json.loads(self._request("POST", f"/run/{name}", json.dumps(args).encode()))

    def get_statistics(self) -> Any:
        return json.loads(self._request("GET", "/stats"))

    def check_status(self) -> None:
        self._request("GET", "/status")


def test_openlambdas_client_works_unchanged(worker: WorkerProcess) -> None:
    assert worker.deploy("echo", EXAMPLES / "echo").status == 201
    client = OpenLambdaClient(f"127.0.0.1:{worker.port}")
    client.check_status()
    assert client.run("echo", {"a": [1, 2]}) == {"a": [1, 2]}
    statistics = client.get_statistics()
    assert statistics["pull-package.cnt"] == 0 and statistics["invocations"] == 1


@pytest.mark.skipif(os.environ.get("WASMLAMBDA_OFFLINE") == "1", reason="needs PyPI")
def test_packages_with_optional_c_code_are_built_from_source(tmp_path: Path) -> None:
    code = folder(tmp_path, "formats", {
        "f.py": "import msgpack, simplejson, yaml\n\ndef f(event):\n"
                "    return [yaml.safe_load('a: [1, 2]'), msgpack.unpackb(msgpack.packb([1, 'x'])),"
                " simplejson.loads('[3]'), yaml.__with_libyaml__]\n",
        "requirements.txt": "pyyaml\nmsgpack\nsimplejson\n"})
    ran = subprocess.run([sys.executable, "-m", "guest_sdk", "run", str(code), "{}"], capture_output=True, text=True,
                         timeout=600)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == [{"a": [1, 2]}, [1, "x"], [3], False]
    assert "building it from source" in ran.stderr or "built from source" in ran.stderr
