"""uvicorn's HTTP protocol with an OpenAI-style body on the 400 it sends for unparseable HTTP.

A request uvicorn cannot parse (a bad request line or header, `Content-Length: abc`, broken chunked framing) never
reaches the app: uvicorn answers a plain-text 400 itself. This subclass of the protocol uvicorn would pick
(`http="auto"`: httptools when installed, else h11) answers `{"error": {...}}` instead. Pass it as
`uvicorn.Config(app, http=JSONErrorProtocol)`. It overrides `send_400_response`, the method both uvicorn protocols
use for this answer; tests/server/test_malformed.py fails if a uvicorn upgrade stops calling it.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from genserve.server.errors import APIError

BAD_HTTP = APIError(400, "the HTTP request is malformed (its request line, a header such as Content-Length, or "
                         "its chunked framing could not be parsed); send a well-formed HTTP/1.1 request",
                    code="invalid_http_request")


class JSONErrorProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    def send_400_response(self, msg: str) -> None:
        body = json.dumps(BAD_HTTP.body()).encode()
        head = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(head + body)
        self.transport.close()
