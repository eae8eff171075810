"""Timing rules (silence, overtalk, speech rate, duration): skipped, not failed, without timestamps."""

from __future__ import annotations

from kefu.schemas import Transcript
from qa_inspect.lexicon import PhraseIndex, Resources
from qa_inspect.rules.base import ROLES, Context, RuleHit, Scope, ScorecardError, Spec, register


def _timed(transcript: Transcript, ctx: Context, rule_type: str) -> bool:
    if transcript.has_timestamps:
        return True
    ctx.skipped.add(rule_type)
    return False


class SilenceRule:
    """A gap longer than `max_s` before a turn of `role` (dead air). When the agent's latest turn
    announced a hold (请您稍等, 我帮您查询一下) the gap may last up to `hold_max_s`.
    """

    type = "silence"

    def __init__(self, max_s: float, role: str, hold: PhraseIndex | None, hold_max_s: float) -> None:
        self.max_s = max_s
        self.role = role
        self.hold = hold
        self.hold_max_s = hold_max_s

    def check(self, transcript: Transcript, ctx: Context) -> list[RuleHit]:
        if not _timed(transcript, ctx, self.type):
            return []
        turns = transcript.turns
        hits = []
        # Running values instead of rescanning the turns before each one (calls can have hundreds of turns).
        latest_end = turns[0].end if turns else None
        last_agent = 0 if turns and turns[0].role == "agent" else None
        for i in range(1, len(turns)):
            previous_end, previous_agent = latest_end, last_agent
            latest_end = max(latest_end, turns[i].end)  # type: ignore[type-var]
            if turns[i].role == "agent":
                last_agent = i
            if self.role != "any" and turns[i].role != self.role:
                continue
            gap = turns[i].start - previous_end  # type: ignore[operator]
            limit = self.max_s
            if self.hold is not None and previous_agent is not None and self.hold.find(ctx.text(previous_agent)):
                limit = self.hold_max_s
            if gap > limit:
                hits.append(RuleHit(self.type, "timing", i, None, "", {"gap_s": round(gap, 2), "limit_s": limit}))
        return hits

    def describe(self) -> str:
        who = "any turn" if self.role == "any" else f"a {self.role} turn"
        return f"silence over {self.max_s:g}s before {who} ({self.hold_max_s:g}s after a hold notice)"


@register(
    "silence",
    ("max_s", "role", "hold_max_s", "hold_kind"),
    "silence longer than max_s before a turn (longer allowed after a hold notice)",
)
def _silence(spec: Spec, resources: Resources) -> SilenceRule:
    max_s = spec.number("max_s", 10.0, 0.0)
    hold = None
    if spec.get("hold_kind", "hold"):
        kind = spec.string("hold_kind", "hold")
        if kind not in resources.phrases:
            raise ScorecardError(f"{spec.at('hold_kind')}: unknown phrase kind {kind!r}")
        hold = PhraseIndex((p.phrase, p.phrase) for p in resources.phrases[kind])
    return SilenceRule(max_s, spec.string("role", "any", ROLES), hold, spec.number("hold_max_s", 60.0, 0.0))


class OvertalkRule:
    """A turn of `role` that starts at least `min_overlap_s` before the other side's turn ends."""

    type = "overtalk"

    def __init__(self, role: str, min_overlap_s: float) -> None:
        self.role = role
        self.min_overlap_s = min_overlap_s

    def check(self, transcript: Transcript, ctx: Context) -> list[RuleHit]:
        if not _timed(transcript, ctx, self.type):
            return []
        turns = transcript.turns
        hits = []
        for i in range(1, len(turns)):
            prev, cur = turns[i - 1], turns[i]
            if prev.role == cur.role or (self.role != "any" and cur.role != self.role):
                continue
            overlap = prev.end - cur.start  # type: ignore[operator]
            if overlap >= self.min_overlap_s:
                hits.append(RuleHit(self.type, "timing", i, None, cur.text, {"overlap_s": round(overlap, 2)}))
        return hits

    def describe(self) -> str:
        return f"a {self.role} turn starting {self.min_overlap_s:g}s+ before the other side finished (interrupting)"


@register("overtalk", ("role", "min_overlap_s"), "interrupting: a turn starts before the other side's turn ends")
def _overtalk(spec: Spec, resources: Resources) -> OvertalkRule:
    return OvertalkRule(spec.string("role", "agent", ROLES), spec.number("min_overlap_s", 1.0, 0.0))


class SpeechRateRule:
    """Speech rate of `role` in characters per second (normalised text) outside [min_cps, max_cps],
    over the role's turns of at least `min_turn_s` seconds (call average; the fastest turn as evidence).
    """

    type = "speech_rate"

    def __init__(self, scope: Scope, max_cps: float | None, min_cps: float | None, min_turn_s: float) -> None:
        self.scope = scope
        self.max_cps = max_cps
        self.min_cps = min_cps
        self.min_turn_s = min_turn_s

    def check(self, transcript: Transcript, ctx: Context) -> list[RuleHit]:
        if not _timed(transcript, ctx, self.type):
            return []
        chars, secs, rates = 0, 0.0, []
        for i in self.scope.indices(transcript.turns, ctx):
            t = transcript.turns[i]
            dur = t.end - t.start  # type: ignore[operator]
            if dur < self.min_turn_s:
                continue
            n = len(ctx.text(i))
            chars += n
            secs += dur
            rates.append((n / dur, i))
        if not secs:
            return []
        rate = chars / secs
        too_fast = self.max_cps is not None and rate > self.max_cps
        too_slow = self.min_cps is not None and rate < self.min_cps
        if not (too_fast or too_slow):
            return []
        turn_rate, turn = max(rates) if too_fast else min(rates)
        detail = {
            "rate_cps": round(rate, 2),
            "turn_rate_cps": round(turn_rate, 2),
            "too": "fast" if too_fast else "slow",
        }
        return [RuleHit(self.type, "timing", turn, None, transcript.turns[turn].text, detail)]

    def describe(self) -> str:
        return f"speech rate of {self.scope.describe()} outside [{self.min_cps}, {self.max_cps}] chars/s"


@register(
    "speech_rate",
    ("max_cps", "min_cps", "min_turn_s", *Scope.SPEC_KEYS),
    "average characters per second of a role above max_cps or below min_cps",
)
def _speech_rate(spec: Spec, resources: Resources) -> SpeechRateRule:
    max_cps = spec.number("max_cps", None, 0.0) if spec.has("max_cps") else None
    min_cps = spec.number("min_cps", None, 0.0) if spec.has("min_cps") else None
    if max_cps is None and min_cps is None:
        raise ScorecardError(f"{spec.where}: give max_cps and/or min_cps")
    return SpeechRateRule(Scope.from_spec(spec, "agent"), max_cps, min_cps, spec.number("min_turn_s", 1.5, 0.0))


class DurationRule:
    """Call duration (first start to last end) above `max_s` or below `min_s`."""

    type = "duration"

    def __init__(self, max_s: float | None, min_s: float | None) -> None:
        self.max_s = max_s
        self.min_s = min_s

    def check(self, transcript: Transcript, ctx: Context) -> list[RuleHit]:
        if not _timed(transcript, ctx, self.type):
            return []
        turns = transcript.turns
        dur = max(t.end for t in turns) - min(t.start for t in turns)  # type: ignore[type-var,operator]
        if (self.max_s is not None and dur > self.max_s) or (self.min_s is not None and dur < self.min_s):
            return [RuleHit(self.type, "timing", None, None, "", {"duration_s": round(dur, 2)})]
        return []

    def describe(self) -> str:
        return f"call duration outside [{self.min_s}, {self.max_s}] s"


@register("duration", ("max_s", "min_s"), "call duration above max_s or below min_s")
def _duration(spec: Spec, resources: Resources) -> DurationRule:
    max_s = spec.number("max_s", None, 0.0) if spec.has("max_s") else None
    min_s = spec.number("min_s", None, 0.0) if spec.has("min_s") else None
    if max_s is None and min_s is None:
        raise ScorecardError(f"{spec.where}: give max_s and/or min_s")
    return DurationRule(max_s, min_s)
