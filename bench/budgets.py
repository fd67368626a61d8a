"""The DESIGN.md section 4 budgets this suite can judge, each as ratios within one run."""

from __future__ import annotations

from dataclasses import dataclass

from bench.outcome import Outcome, best

ROUTED = ("turnout-routed-1w", "turnout-routed-2w")
MLSERVER = ("mlserver-plain", "mlserver-batch")
BARE = ("bare-1w", "bare-2w")


@dataclass(frozen=True)
class Verdict:
    budget: str
    measured: str
    verdict: str


def _pick(outcomes: list[Outcome], keys: tuple[str, ...], connections: int) -> Outcome | None:
    return best([o for o in outcomes if o.key in keys], connections)


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _missing(budget: str, *names: str) -> Verdict:
    return Verdict(budget, f"no result for {' / '.join(names)}", "not measured")


def _short(outcome: Outcome) -> str:
    return outcome.label.split(" (")[0] if "routed" in outcome.label else outcome.label


def _against_mlserver(outcomes: list[Outcome]) -> list[Verdict]:
    throughput = "routed turnout at 16 connections: >= 3x MLServer best throughput"
    latency = "routed turnout at 16 connections: p99 no worse than MLServer best"
    routed, mlserver = _pick(outcomes, ROUTED, 16), _pick(outcomes, MLSERVER, 16)
    if routed is None or mlserver is None:
        return [_missing(throughput, "routed turnout", "MLServer"), _missing(latency, "both")]
    mine, theirs = routed.loads[16], mlserver.loads[16]
    ratio = mine.rps / theirs.rps
    who = f"{_short(routed)} vs {mlserver.label}"
    return [
        Verdict(
            throughput,
            f"{mine.rps:.0f} vs {theirs.rps:.0f} req/s = {ratio:.2f}x ({who})",
            _met(ratio >= 3.0),
        ),
        Verdict(
            latency,
            f"p99 {mine.p99_ms:.2f} vs {theirs.p99_ms:.2f} ms ({who})",
            _met(mine.p99_ms <= theirs.p99_ms),
        ),
    ]


def _against_bare(outcomes: list[Outcome]) -> list[Verdict]:
    throughput = "routed turnout at 16 connections: >= 1.5x the bare app (best of 1 and 2 workers)"
    overhead = "1 connection: turnout champion p50 <= bare app p50 + 0.3 ms (1 worker each)"
    found = []
    routed, bare = _pick(outcomes, ROUTED, 16), _pick(outcomes, BARE, 16)
    if routed is None or bare is None:
        found.append(_missing(throughput, "routed turnout", "bare app"))
    else:
        mine, theirs = routed.loads[16], bare.loads[16]
        ratio = mine.rps / theirs.rps
        single = _pick(outcomes, ("bare-1w",), 16)
        extra = ""
        if single is not None and single is not bare:
            extra = f"; vs bare 1 worker {mine.rps / single.loads[16].rps:.2f}x"
        found.append(
            Verdict(
                throughput,
                f"{mine.rps:.0f} vs {theirs.rps:.0f} req/s = {ratio:.2f}x "
                f"({_short(routed)} vs {bare.label}{extra})",
                _met(ratio >= 1.5),
            )
        )
    champion = next((o for o in outcomes if o.key == "turnout-champion-1w"), None)
    floor = next((o for o in outcomes if o.key == "bare-1w"), None)
    if champion is None or floor is None or champion.at(1) is None or floor.at(1) is None:
        found.append(_missing(overhead, "turnout champion at 1", "bare app at 1"))
    else:
        mine, theirs = champion.loads[1], floor.loads[1]
        gap = mine.p50_ms - theirs.p50_ms
        found.append(
            Verdict(
                overhead,
                f"p50 {mine.p50_ms:.2f} vs {theirs.p50_ms:.2f} ms: +{gap:.2f} ms",
                _met(gap <= 0.3),
            )
        )
    return found


def _shadow(outcomes: list[Outcome]) -> Verdict:
    budget = "shadow on: champion p99 rises <= 10% (16 connections, 1 worker)"
    shadow = next((o for o in outcomes if o.key == "turnout-shadow-1w"), None)
    off, on = (None, None) if shadow is None else (shadow.baseline, shadow.at(16))
    if off is None or on is None:
        return _missing(budget, "champion only", "champion + shadow")
    rise = on.p99_ms / off.p99_ms - 1
    return Verdict(
        budget,
        f"median p99 {off.p99_ms:.2f} ms off, {on.p99_ms:.2f} ms on: {rise:+.0%} "
        f"(throughput {off.rps:.0f} -> {on.rps:.0f} req/s)",
        _met(rise <= 0.10),
    )


ELSEWHERE = "not in this suite"
NOT_HERE = [
    Verdict(
        "logging on: throughput falls <= 5%",
        "`python -m bench.logging_impact` (figures in docs/performance.md)",
        ELSEWHERE,
    ),
    Verdict("blue-green switch under load: 0 failed, p99 <= 1.5x steady", "—", ELSEWHERE),
    Verdict("champion hung, deadline 100 ms: all answered, p99 <= 110 ms", "—", ELSEWHERE),
    Verdict(
        "10 million logged predictions: summary <= 1 s",
        "`python -m bench.log_summary` (figures in docs/monitoring.md)",
        ELSEWHERE,
    ),
]


def verdicts(outcomes: list[Outcome]) -> list[Verdict]:
    return [*_against_mlserver(outcomes), *_against_bare(outcomes), _shadow(outcomes), *NOT_HERE]
