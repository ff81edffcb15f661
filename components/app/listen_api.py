"""REST routes of the blind listening tests (``experiments.listen``), and the rater page.

Owner routes: ``POST /listen`` (build a test), ``GET /listen/{test_id}/report``,
``POST /listen/{test_id}/close``. Rater routes: ``GET /listen/{test_id}`` (a standalone HTML page,
no Gradio), ``GET /listen/{test_id}/next``, ``POST /listen/{test_id}/vote`` and
``GET /listen/{test_id}/clip/{clip}``: a rater needs nothing else, so an access layer may let a
rater reach only these (``ListenTests.is_open`` is its cheap check).

Errors: an unknown test, pair or clip is 404; a vote on a pair never served to that rater, or on
a closed test, is 409; a malformed choice, strength or score, or a clip not played, is 422.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal, Optional, Sequence, Union

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from experiments.listen.common import MODES, Conflict, NotFound
from experiments.listen.store import ListenTests

from .api import ERRORS, ErrorResponse
from .context import LabContext

PAGE = Path(__file__).with_name("listen_page.html")
# Synthesising clips for a test (engines x sentences) is short work, but bounded all the same.
MAX_SENTENCES = 20

LISTEN_ERRORS = {
    **{k: ERRORS[k] for k in (401, 422)},
    404: {"model": ErrorResponse, "description": "no such test, pair, item or clip"},
}
BODY_ERRORS = {400: {"model": ErrorResponse, "description": "the body could not be parsed"}}


class CreateTest(BaseModel):
    """A test from a saved run (``run_id`` + ``factor``) or from engines x sentences (synthesised now)."""

    model_config = ConfigDict(extra="forbid")

    run_id: Optional[str] = Field(None, max_length=200, description="a saved run (results folder name)")
    factor: str = Field("engine", max_length=40, description="the run's column whose values are the systems: "
                        "engine, variant, speed, reference_seconds, speaker, seed, ...")
    engines: Optional[list[str]] = Field(None, min_length=2, max_length=8,
                                         description='engines to compare, e.g. ["espeak", "kokoro"] (or engine:variant)')
    sentences: int = Field(3, ge=1, le=MAX_SENTENCES, description="with engines: the first N sentences of lang")
    lang: str = Field("en", max_length=10, description="with engines: the language of the sentences")
    mode: Literal[MODES] = Field("pairwise", description="pairwise: A / B / no preference (+ strength -3..+3); "  # type: ignore[valid-type]
                                 "mos: a 1-5 score per clip; smos: how like its reference "
                                 "recording each clip's voice is, 1-5 (runs of cloning engines)")
    controls: bool = Field(True, description="mix in an identical pair and a low anchor (a clip under noise)")


class Created(BaseModel):
    test_id: str
    url: str = Field(description="the rater page: share it")


class NextPair(BaseModel):
    pair_id: str
    a: str = Field(description="URL of the left clip (opaque)")
    b: str = Field(description="URL of the right clip (opaque)")
    position: int = Field(description="this pair's number for the rater: position of total")
    total: int
    done: Literal[False] = False


class NextItem(BaseModel):
    item_id: str
    clip: str = Field(description="URL of the clip (opaque)")
    reference: Optional[str] = Field(None, description="SMOS: URL of the reference recording (opaque)")
    position: int
    total: int
    done: Literal[False] = False


class Done(BaseModel):
    done: Literal[True] = True
    closed: bool = Field(description="true when the owner closed the test")
    position: int
    total: int


class Vote(BaseModel):
    """Pairwise: ``pair_id`` + ``choice`` (+ ``strength``); MOS: ``item_id`` + ``score``. A vote counts
    only after every clip was played: ``seconds_a`` (and for a pair ``seconds_b``), the seconds the
    rater listened to each clip, must be > 0 (the rater page sends them). Voting again on the same pair
    replaces the earlier vote."""

    rater: str = Field(max_length=40, description="the rater's name, as given to /next")
    pair_id: Optional[str] = Field(None, max_length=40)
    item_id: Optional[str] = Field(None, max_length=40)
    choice: Optional[Literal["a", "b", "tie"]] = Field(None, description="a = left, b = right, tie = no preference")
    strength: Optional[int] = Field(None, ge=-3, le=3, description="CMOS: -3 (A much better) .. +3 (B much better); "
                                    "its sign must agree with choice")
    score: Optional[int] = Field(None, ge=1, le=5, description="MOS: 1 bad .. 5 excellent")
    seconds_a: float = Field(0.0, ge=0, le=3600, description="seconds listened to clip a (MOS: the clip)")
    seconds_b: float = Field(0.0, ge=0, le=3600, description="seconds listened to clip b (SMOS: the reference)")


class SystemReport(BaseModel):
    name: str
    votes: int
    win_rate: Optional[float]
    strength: float = Field(description="Bradley-Terry strength, Elo-like: mean 1000, +400 = 10:1 odds")
    ci_low: Optional[float]
    ci_high: Optional[float]
    mos: Optional[float] = None
    mos_ci_low: Optional[float] = None
    mos_ci_high: Optional[float] = None


class Report(BaseModel):
    model_config = ConfigDict(extra="allow")  # matrix, rater_agreement, judge_rank_correlation, ...

    test_id: str
    mode: str
    votes: int
    systems: list[SystemReport]
    position_bias: Optional[float] = Field(description="share of decisive votes for the left clip (0.5 = none)")
    judge_agreement: dict[str, Optional[float]] = Field(
        description="per judge column: share of decisive votes where the judge's difference points the same way")
    raters: list[dict]


def _http(error: Exception) -> HTTPException:
    code = 404 if isinstance(error, NotFound) else 409
    return HTTPException(code, detail=str(error))


def router(lab: LabContext, *, dependencies: Sequence[Callable] = ()) -> APIRouter:
    """The listening-test routes over ``lab``'s results folder; ``dependencies`` guard every route."""
    tests = ListenTests(lab.store.root)
    api = APIRouter(prefix="/listen", tags=["listen"], dependencies=[Depends(d) for d in dependencies])

    @api.post("", response_model=Created, responses={**LISTEN_ERRORS, **BODY_ERRORS, 503: ERRORS[503]})
    def create(request: CreateTest) -> Created:
        """Build a test (owner). From a run: ``{"run_id", "factor", "mode"}``; from engines x sentences,
        synthesised and judged now: ``{"engines": ["espeak", "kokoro"], "sentences": 3, "lang": "en", "mode"}``."""
        from components.core import LabError

        if (request.run_id is None) == (request.engines is None):
            raise LabError("give run_id (and factor) to test a saved run, or engines (and sentences, lang), not both")
        try:
            if request.run_id is not None:
                if request.run_id not in lab.store.runs():
                    raise NotFound(f"no run {request.run_id!r}; the Results tab lists the saved runs")
                test_id = tests.create_from_run(lab.store, request.run_id, request.factor, request.mode,
                                                controls=request.controls)
            else:
                test_id = tests.create_from_engines(lab, request.engines, request.sentences, request.lang,
                                                    request.mode, controls=request.controls)
        except (NotFound, Conflict) as e:
            raise _http(e) from None
        return Created(test_id=test_id, url=f"/listen/{test_id}")

    @api.get("/{test_id}", response_class=HTMLResponse, responses={404: LISTEN_ERRORS[404]})
    def page(test_id: str) -> HTMLResponse:
        """The rater page: a name field, progress, the players and the vote buttons. It calls only
        this test's ``next``, ``vote`` and ``clip`` routes."""
        try:
            mode = tests.load(test_id)["mode"]
        except NotFound as e:
            raise _http(e) from None
        return HTMLResponse(PAGE.read_text(encoding="utf-8").replace("__MODE__", mode),
                            headers={"Cache-Control": "no-store"})

    @api.get("/{test_id}/next", response_model=Union[NextPair, NextItem, Done], responses=LISTEN_ERRORS)
    def next_unit(test_id: str, rater: str = Query(..., max_length=40, description="the rater's name")):
        """What ``rater`` hears next (each pair once per rater, in an order of their own, sides random
        and recorded), or ``{"done": true}``."""
        try:
            return tests.next(test_id, rater)
        except (NotFound, Conflict) as e:
            raise _http(e) from None

    @api.post("/{test_id}/vote", responses={**LISTEN_ERRORS, **BODY_ERRORS, 409: {"model": ErrorResponse, "description":
                                            "the pair was not served to this rater, or the test is closed"}})
    def vote(test_id: str, body: Vote) -> dict:
        """Record one vote (one fsynced CSV line); the same rater voting on the same pair again replaces it."""
        from components.core import LabError

        unit = body.pair_id or body.item_id
        if not unit:
            raise LabError("give pair_id (pairwise) or item_id (MOS)")
        try:
            row = tests.vote(test_id, body.rater, unit, choice=body.choice, strength=body.strength,
                             score=body.score, seconds_a=body.seconds_a, seconds_b=body.seconds_b)
        except (NotFound, Conflict) as e:
            raise _http(e) from None
        return {"ok": True, "pair_id": row["pair"]}  # never the systems: the rater stays blind

    @api.get("/{test_id}/clip/{clip}", response_class=FileResponse, responses={404: LISTEN_ERRORS[404]})
    def clip(test_id: str, clip: str) -> FileResponse:
        """One clip's audio (WAV); the URL says nothing of its system."""
        try:
            path = tests.clip_path(test_id, clip)
        except NotFound as e:
            raise _http(e) from None
        return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "no-store"})

    @api.get("/{test_id}/report", response_model=Report, responses=LISTEN_ERRORS)
    def report(test_id: str) -> dict:
        """Per system: votes, win rate, Bradley-Terry strength with a 95% bootstrap interval (MOS with
        its interval); the win matrix, position bias, rater agreement and pass rates, judge agreement (owner)."""
        try:
            return tests.report(test_id)
        except NotFound as e:
            raise _http(e) from None

    @api.post("/{test_id}/close", responses=LISTEN_ERRORS)
    def close(test_id: str) -> dict:
        """Stop taking votes (owner); the votes and the report stay."""
        try:
            tests.close(test_id)
        except NotFound as e:
            raise _http(e) from None
        return {"test_id": test_id, "open": False}

    return api
