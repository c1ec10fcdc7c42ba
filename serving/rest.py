"""A client for TF Serving's REST predict API (``/v1/models/<name>[/versions/<v>]:predict``).

Requests use the row format with binary images as ``{"b64": ...}`` objects;
responses in row (``predictions``) and columnar (``outputs``) form are parsed
to one array per named output. Only the standard library is used.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.errors import OptionError
from serving.signatures import BYTES_SIGNATURE


class ServingError(RuntimeError):
    """TF Serving answered with an error, or could not be reached."""


class RejectedInput(ServingError):
    """TF Serving refused the request's data (HTTP 400): a problem of these inputs, not of the server."""


_URL = re.compile(r"^(https?://[^/]+)/v1/models/([^/:]+)(/versions/\d+|/labels/[^/:]+)?(:predict)?/?$")


def predict_url(server: str) -> str:
    """Normalize a model URL to its ``:predict`` endpoint.

    Accepts ``http://host:8501/v1/models/NAME``, with an optional
    ``/versions/N`` or ``/labels/L`` and an optional ``:predict``.

    Raises:
        ValueError: If ``server`` is not such a URL.
    """
    m = _URL.match(server.strip())
    if not m:
        raise OptionError(
            "`--server` must be a TF Serving model URL like http://localhost:8501/v1/models/unet "
            f"(optionally /versions/N). Received: {server!r}"
        )
    return f"{m.group(1)}/v1/models/{m.group(2)}{m.group(3) or ''}:predict"


def request_body(images: Sequence[bytes], signature_name: str = BYTES_SIGNATURE) -> dict[str, Any]:
    """Row-format predict body: one ``{"b64": ...}`` instance per encoded image."""
    return {
        "signature_name": signature_name,
        "instances": [{"b64": base64.b64encode(b).decode("ascii")} for b in images],
    }


def _decode_value(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"b64"}:
        return base64.b64decode(v["b64"])
    if isinstance(v, list):
        return [_decode_value(x) for x in v]
    return v


def parse_response(payload: dict[str, Any], output_name: str = "output") -> dict[str, np.ndarray]:
    """Arrays of a predict response, keyed by output name.

    Row format ``{"predictions": [...]}`` is a list of per-instance objects when
    the signature has several outputs, or of bare values when it has one (named
    ``output_name`` here). Columnar ``{"outputs": ...}`` is an object of
    outputs, or a bare value for a single output.

    Raises:
        ServingError: On ``{"error": ...}`` or an unrecognized body.
    """
    if "error" in payload:
        raise ServingError(f"TF Serving error: {payload['error']}")
    if "predictions" in payload:
        rows = payload["predictions"]
        if not isinstance(rows, list):
            raise ServingError(f"`predictions` must be a list. Received: {type(rows).__name__}")
        if rows and all(isinstance(r, dict) and "b64" not in r for r in rows):
            keys = list(rows[0])
            return {k: np.asarray(_decode_value([r[k] for r in rows])) for k in keys}
        return {output_name: np.asarray(_decode_value(rows))}
    if "outputs" in payload:
        outs = payload["outputs"]
        if isinstance(outs, dict) and "b64" not in outs:
            return {k: np.asarray(_decode_value(v)) for k, v in outs.items()}
        return {output_name: np.asarray(_decode_value(outs))}
    raise ServingError(f"response has neither `predictions` nor `outputs` nor `error`: keys {sorted(payload)}")


def post_predict(url: str, body: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """POST ``body`` as JSON to ``url``; return the decoded JSON answer.

    Raises:
        ServingError: On an HTTP error (with TF Serving's ``error`` message) or no connection.
    """
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            message = json.loads(text).get("error", text)
        except json.JSONDecodeError:
            message = text
        error = RejectedInput if e.code == 400 else ServingError
        raise error(f"{url} answered HTTP {e.code}: {message}") from e
    except urllib.error.URLError as e:
        raise ServingError(f"cannot reach TF Serving at {url}: {e.reason}") from e
