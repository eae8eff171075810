"""Request and response models of the assist service (they are the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kefu.schemas import normalize_role

MAX_TEXT_CHARS = 2000
CALL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"


class TurnIn(BaseModel):
    """One utterance of the live call."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={
        "examples": [{"role": "customer", "text": "喂 我家停电了 整个屋子都没电"}]})

    role: str = Field(description="agent or customer (坐席/客服 and 客户/用户 accepted)")
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="the utterance (ASR or chat text)")
    start: float | None = Field(default=None, ge=0, description="seconds from the start of the call (optional)")
    end: float | None = Field(default=None, ge=0)

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        role = normalize_role(value)
        if role is None:
            raise ValueError(f"must be agent or customer (or 坐席/客服/客户/用户), got {value!r}")
        return role

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class SuggestionOut(BaseModel):
    """A script shown to the agent."""

    id: str
    scenario: str
    script: str
    score: float = Field(description="ranking score 0–1: calibrated retrieval score plus bounded feedback adjustment")
    base_score: float = Field(description="the retriever's calibrated score (thresholds apply to it)")
    confident: bool = Field(description="base_score is above the confident threshold")
    category: str = ""
    tags: list[str] = []
    matched_terms: list[str] = []
    reason: str = Field("match", description="match (this turn), context (earlier turns), risk (sensitive scenario)")


class AlertOut(BaseModel):
    """An alert for the agent: taboo, complaint_risk or reminder; more fields by type."""

    model_config = ConfigDict(extra="allow")

    type: str
    message: str
    severity: str = "warning"


class TurnOut(BaseModel):
    """What the agent sees after a turn."""

    call_id: str
    turn: int = Field(description="0-based index of the turn in the call")
    role: str
    suggestions: list[SuggestionOut]
    alerts: list[AlertOut]
    risk: float | None = Field(None, description="complaint risk of this customer turn")
    call_risk: float = Field(0.0, description="the call's risk level after this turn")
    scenario: dict[str, Any] | None = None
    used_script: dict[str, Any] | None = Field(None, description="the shown script the agent's turn reused, if any")
    gap: bool = Field(False, description="no script reached the confidence threshold: logged as a knowledge gap")
    latency_ms: float = Field(description="time spent in the engine")
    kb_version: str | None = None


class CallState(BaseModel):
    """A live call's state."""

    model_config = ConfigDict(extra="allow")

    call_id: str
    n_turns: int
    turns: list[dict[str, str]]
    scenario: dict[str, Any] | None
    shown: list[str]
    used: list[str]
    risk_trajectory: list[float]
    call_risk: float
    alerts: list[dict[str, Any]]


class EndOut(BaseModel):
    call_id: str
    ended: bool
    n_turns: int


class FeedbackIn(BaseModel):
    """The agent's verdict on a suggestion."""

    script_id: str = Field(min_length=1, max_length=128)
    action: Literal["accepted", "dismissed", "used"]


class FeedbackOut(BaseModel):
    call_id: str
    script_id: str
    action: str
    recorded: bool


class HealthOut(BaseModel):
    status: str
    kb_version: str | None
    index: str = Field(description="loaded, missing (no index yet: no suggestions) or stale")
    sessions: int
    pid: int
    auth: bool


class ReloadOut(BaseModel):
    reloaded: bool
    kb_version: str | None
    message: str = ""


class ScriptIn(BaseModel):
    """A scenario script to add or replace (knowledge-base write; trainer or admin)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=64)
    scenario: str = Field(min_length=1)
    questions: list[str] = Field(min_length=1)
    script: str = Field(min_length=1)
    category: str = ""
    keywords: list[str] = []
    tags: list[str] = []


class ScriptsIn(BaseModel):
    scripts: list[ScriptIn] = Field(min_length=1, max_length=1000)
    approve: bool = Field(True, description="approve at once (suggested to agents after the next reload)")
