"""Errors as DIGITS's REST API sends them: JSON with a 4xx status and a message naming the problem.

DIGITS (``digits/views.py`` ``handle_error``) answers ``{"error": {"message", "type",
"description"}}`` with werkzeug's exception name as the type; clients written for it read
``error.message``. Never a traceback: an unexpected failure is a 500 with one line.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

#: werkzeug's exception class names, which DIGITS puts in ``error.type``.
ERROR_TYPES = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "RequestEntityTooLarge",
    500: "InternalServerError",
    501: "NotImplemented",
    503: "ServiceUnavailable",
}


class ApiError(Exception):
    """A request the server refuses; ``status`` is the HTTP status, ``message`` one line for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = " ".join(str(message).split())


def error_response(status: int, message: str) -> JSONResponse:
    """The JSON body DIGITS clients expect for an error."""
    kind = ERROR_TYPES.get(status, "HTTPException")
    body = {"error": {"message": message, "type": kind, "description": message}}
    return JSONResponse(body, status_code=status)
