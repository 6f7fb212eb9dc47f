"""A Flask app with Jinja2 templates, deployed as OpenLambda users deploy it:
ol.yaml names this file (OL_ENTRY_FILE) and the app (OL_WSGI_ENTRY), and
requirements.txt asks for flask (MarkupSafe, which Flask's templates need,
has no pure-Python wheel: guest_sdk builds it from its source without its
optional C speed-ups).

The app is created at deploy time, so Flask's import and set-up live in the
function's snapshot; a request only runs the view.
"""

import os

from flask import Flask, jsonify, render_template, request

app = Flask(__name__)


@app.route("/")
def index():
    return render_template("index.html", greeting=os.environ.get("GREETING", "Hello"),
                           names=request.args.getlist("name"))


@app.route("/echo", methods=["POST"])
def echo():
    text = request.get_data(as_text=True)
    return jsonify(text=text, length=len(text), query=request.args.to_dict(),
                   content_type=request.content_type), 201


@app.route("/secret")
def secret():
    # Secrets (wasmlambda secrets set flask_app API_TOKEN ...) are read when a
    # request runs: they are never part of the snapshot.
    return {"has_token": "API_TOKEN" in os.environ}


@app.errorhandler(404)
def not_found(error):
    return render_template("404.html", path=request.path), 404
