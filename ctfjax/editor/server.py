"""The editor's HTTP server: one static page and a small JSON API.

Python's standard `http.server` (one thread per connection) serves it: the
page is one static file and the API has four routes, so a web framework
would add a dependency and nothing the editor uses (docs/editor.md says
more). Routes:

    GET  /               the page (ctfjax/editor/static/index.html)
    GET  /api/model      `Session.describe`
    GET  /api/test?start=S&count=C   test images and their labels
    POST /api/edit       `Session.edit`

Every error is JSON {"error": one line} with a 4xx status (5xx only for a
bug, which is logged with its traceback). Edits run one at a time on the
device (a lock held only around the model's computation); at most `queue`
edit requests wait or run at once, and one more is refused with 503 at
once rather than queued without bound. A client that disconnects costs
only its own request.
"""

from __future__ import annotations

import http.server
import json
import pathlib
import sys
import threading
import traceback
import urllib.parse
from typing import Any

from ctfjax.editor.session import EditorError, Session

STATIC = pathlib.Path(__file__).parent / "static"
# A request body above this is refused before it is read (the image limit
# of `session.MAX_IMAGE_BYTES` in base64 plus the JSON around it).
MAX_BODY = 12 * 2**20


class EditorServer(http.server.ThreadingHTTPServer):
  """Serves one `Session`.

  Attributes:
    session: the opened run.
    slots: at most `queue` edit requests at once.
    device: held around each edit's computation.
  """

  daemon_threads = True
  allow_reuse_address = True

  def __init__(self, session: Session, host: str, port: int, queue: int = 4,
               quiet: bool = False):
    self.session = session
    self.slots = threading.BoundedSemaphore(queue)
    self.device = threading.Lock()
    self.quiet = quiet
    super().__init__((host, port), Handler)

  @property
  def url(self) -> str:
    host, port = self.server_address[:2]
    return f"http://{host}:{port}/"


class Handler(http.server.BaseHTTPRequestHandler):
  """One connection's requests."""

  server: EditorServer
  # A client that stalls mid-request frees its thread after this long.
  timeout = 60
  protocol_version = "HTTP/1.1"

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    if not self.server.quiet:
      sys.stderr.write(f"{self.address_string()} {format % args}\n")

  def _send(self, status: int, body: bytes, content_type: str):
    try:
      self.send_response(status)
      self.send_header("Content-Type", content_type)
      self.send_header("Content-Length", str(len(body)))
      self.send_header("Cache-Control", "no-store")
      self.end_headers()
      self.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
      self.close_connection = True
      self.log_message("client went away before the %d answer", status)

  def _json(self, status: int, payload: Any):
    self._send(status, json.dumps(payload).encode(), "application/json")

  def _error(self, status: int, message: str):
    self._json(status, {"error": message})

  def _route(self, handler):
    try:
      handler()
    except EditorError as e:
      self._error(e.status, str(e))
    except Exception as e:  # pylint: disable=broad-except
      traceback.print_exc()
      self._error(500, f"internal error: {type(e).__name__}: {e}")

  def do_GET(self):  # pylint: disable=invalid-name
    self._route(self._get)

  def do_POST(self):  # pylint: disable=invalid-name
    self._route(self._post)

  def _get(self):
    url = urllib.parse.urlsplit(self.path)
    if url.path in ("/", "/index.html"):
      self._send(200, (STATIC / "index.html").read_bytes(),
                 "text/html; charset=utf-8")
    elif url.path == "/api/model":
      self._json(200, self.server.session.describe())
    elif url.path == "/api/test":
      query = urllib.parse.parse_qs(url.query)
      start = _query_int(query, "start", 0)
      count = _query_int(query, "count", 24)
      self._json(200, self.server.session.test_images(start, count))
    else:
      raise EditorError(f"no such page {url.path!r}", 404)

  def _post(self):
    url = urllib.parse.urlsplit(self.path)
    if url.path != "/api/edit":
      raise EditorError(f"no such endpoint {url.path!r} (POST /api/edit)",
                        404)
    request = self._body()
    if not self.server.slots.acquire(blocking=False):
      raise EditorError("the editor is busy (too many edits at once); "
                        "try again", 503)
    try:
      answer = self.server.session.edit(request, lock=self.server.device)
    finally:
      self.server.slots.release()
    self._json(200, answer)

  def _body(self) -> Any:
    """The request's JSON, read only when its declared size is allowed."""
    length = self.headers.get("Content-Length")
    if length is None:
      self.close_connection = True
      raise EditorError("the request has no Content-Length", 411)
    try:
      length = int(length)
    except ValueError:
      self.close_connection = True
      raise EditorError(f"bad Content-Length {length!r}") from None
    if length > MAX_BODY:
      self.close_connection = True
      raise EditorError(f"the request is {length} bytes; at most "
                        f"{MAX_BODY // 2**20} MB", 413)
    body = self.rfile.read(length)
    if len(body) < length:
      self.close_connection = True
      raise EditorError(f"the request body ended after {len(body)} of "
                        f"{length} bytes")
    try:
      return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise EditorError(f"the request body is not JSON ({e})") from None


def _query_int(query: dict[str, list[str]], name: str, default: int) -> int:
  values = query.get(name)
  if not values:
    return default
  try:
    return int(values[0])
  except ValueError:
    raise EditorError(f"{name}={values[0]!r} is not an integer") from None


def serve(session: Session, host: str = "127.0.0.1", port: int = 8080,
          queue: int = 4, quiet: bool = False,
          ready=None) -> None:
  """Serve until interrupted.

  Args:
    session: the opened run.
    host, port: where to listen (port 0: any free port).
    queue: edit requests admitted at once.
    quiet: no per-request log lines.
    ready: called with the server once it listens (tests).
  """
  try:
    server = EditorServer(session, host, port, queue=queue, quiet=quiet)
  except OSError as e:
    from ctfjax.errors import UserError  # pylint: disable=import-outside-toplevel
    raise UserError(f"cannot listen on {host}:{port}: "
                    f"{e.strerror or e}") from None
  print(f"ctfjax editor on {server.url} ({session.default} of "
        f"{session.root}; Ctrl-C stops)", flush=True)
  if ready is not None:
    ready(server)
  with server:
    try:
      server.serve_forever()
    except KeyboardInterrupt:
      print("stopped", flush=True)

