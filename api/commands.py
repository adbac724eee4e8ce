"""Commands to a vehicle's terminal: text to the driver, the reporting interval, a position
query, a photo now — queued for the dispatcher (muckwatch/dispatch.py), followed to the
terminal's answer (docs/api.md, Commands)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal, need
from store import audit, commands

router = APIRouter(tags=["commands"])


class CommandBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["text", "params", "position", "capture"]
    args: dict = Field(default_factory=dict, description=(
        "text: {text, flags?}; params: {report_interval_s?, heartbeat_s?, "
        "sleep_report_interval_s?, alarm_report_interval_s?}; position: {}; "
        "capture: {channel, shots?, interval_s?, resolution?, quality?}"))
    timeout_s: float | None = Field(default=None, ge=1, le=86_400, description=(
        "no answer from the terminal by then: 'timeout' ([terminal] command_timeout_s)"))


def _company(who: Principal) -> str | None:
    return who.company if who.role == "company" else None


@router.post("/v1/devices/{device_id}/commands", status_code=201,
             summary="Send a command to a vehicle's terminal (queued; audited)")
def send(device_id: str, body: CommandBody, request: Request,
         who: Principal = Depends(need("commands.send"))) -> dict:
    timeout = body.timeout_s or request.app.state.config.command_timeout_s
    with request.app.state.db.transaction() as conn:
        try:
            row = commands.queue(conn, device_id=device_id, kind=body.kind, args=body.args,
                                 requested_by=who.account, timeout_s=timeout,
                                 company=_company(who))
        except commands.CommandError as e:
            raise HTTPException(422, str(e)) from None
        except commands.NoSuchVehicle as e:
            raise HTTPException(404, str(e)) from None
        audit.record(conn, actor=who.account, role=who.role, action=f"command.{body.kind}",
                     resource="device", resource_id=device_id, before=None,
                     after={"command": row["id"], "args": row["args"]})
    return row


@router.get("/v1/commands/{command_id}", summary="One command and what became of it")
def one(command_id: str, request: Request,
        who: Principal = Depends(need("commands.read"))) -> dict:
    with request.app.state.db.transaction() as conn:
        row = commands.get(conn, command_id, _company(who))
    if row is None:
        raise HTTPException(404, f"no command {command_id!r}")
    return row


@router.get("/v1/devices/{device_id}/commands", summary="A terminal's commands, newest first")
def for_device(device_id: str, request: Request,
               who: Principal = Depends(need("commands.read")),
               limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        return commands.for_device(conn, device_id, company=_company(who), limit=limit)
