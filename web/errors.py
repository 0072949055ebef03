"""The API's errors: JSON `{"error", "parameter"?, "detail"}`, 400 naming the bad parameter, 404 for an unknown
indicator code or path."""

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str, parameter: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.parameter = status, error, detail, parameter


class ErrorBody(BaseModel):
    error: str = Field(description="bad_parameter, unknown_indicator, not_found, unauthorized or misconfigured")
    parameter: str | None = Field(None, description="the query or path parameter at fault")
    detail: str


def error_response(status: int, error: str, detail: str, parameter: str | None = None) -> JSONResponse:
    body = {"error": error, "detail": detail}
    if parameter is not None:
        body["parameter"] = parameter
    return JSONResponse(body, status_code=status)
