"""The plan's decisions, PURE: a table of measured candidates in, the pick out.

Nothing here measures, reads a file or imports a model library, so every rule is a unit test:

    feasible      p95 latency of one inference (a batch of --streams clips) <= the budget,
                  accuracy drop vs the unpruned FP32 model <= --max-drop points,
                  peak RSS <= --memory-mb (when given)
    select        the most accurate feasible candidate; ties go to the lower p95, then the
                  smaller file, then the lower peak RSS, then the name (deterministic)
    nearest miss  when nothing is feasible: the fastest candidate within the accuracy floor
                  (and memory); else the most accurate within the budget; else the fastest
    skip_reason   the search's pruning: candidates are measured most-pruned first, and a
                  smaller model of the same precision/backend/threads that was already over
                  the budget (or the memory) rules out every larger one unmeasured

The latency judged is p95, not p50: at one inference per K frames, a stream whose
inference is over the budget one time in two falls behind at once (frames queue, then drop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

ACC_EPS = 1e-9  # accuracies closer than this are a tie (compared rounded to 9 places)


@dataclass(frozen=True)
class Candidate:
    drop: int  # encoder layers removed by pruning (0: the unpruned model)
    precision: str  # the graph's precision: a row of edgevid.core.precision.PRECISIONS
    backend: str  # a row of edgevid.plan.space.BACKENDS: onnxruntime, openvino-bf16, ...
    threads: int | None  # CPU inference threads (None: the backend's default)

    @property
    def name(self) -> str:
        level = f"prune{self.drop}" if self.drop else "unpruned"
        threads = f" x{self.threads}" if self.threads else ""
        return f"{level} {self.precision} {self.backend}{threads}"

    @property
    def family(self) -> tuple[str, str, int | None]:
        """What the search's pruning compares across prune levels."""
        return (self.precision, self.backend, self.threads)


@dataclass(frozen=True)
class Constraints:
    budget_ms: float  # p95 of one inference (a batch of `streams` clips) may take this long
    max_drop: float = 1.0  # accuracy points below the unpruned FP32 model, at most
    memory_mb: float | None = None  # peak RSS of the process running it, at most
    streams: int = 1  # camera streams batched into one inference (as `edgevid run` batches)


@dataclass(frozen=True)
class Row:
    """One measured candidate (edgevid.plan.measure fills one per candidate)."""

    candidate: Candidate
    accuracy: float | None  # top-1 on the eval split (None: not measured, e.g. random weights)
    p50_ms: float  # one inference of a batch of `streams` clips
    p95_ms: float
    clips_per_s: float  # throughput at that batch: streams * 1000 / p50
    rss_mb: float  # peak resident memory of the measuring process
    size_mb: float  # the model file (+ external data)
    extra: dict = field(default_factory=dict, compare=False)  # what the measurement adds

    @property
    def name(self) -> str:
        return self.candidate.name


@dataclass
class Selection:
    pick: Row | None  # the most accurate feasible candidate (None: nothing is feasible)
    feasible: list[Row]  # every candidate meeting the constraints, best first
    miss: Row | None  # the nearest miss when nothing is feasible
    message: str  # the recommendation (or the miss), one plain sentence


def budget_ms(budget: float | None, fps: float | None, every: int) -> float:
    """The latency budget: ``budget`` ms as given, else the time ``every`` frames take at
    ``fps`` (30 fps, one inference per 8 frames: 8 / 30 s = 266.7 ms)."""
    if budget is not None:
        return float(budget)
    if fps is None:
        raise ValueError("give a budget in ms, or the camera fps and the frames per inference")
    return 1000.0 * every / fps


def accuracy_drop(row: Row, baseline: float | None) -> float | None:
    """Points of top-1 lost against the unpruned FP32 model (negative: gained)."""
    if row.accuracy is None or baseline is None:
        return None
    return 100.0 * (baseline - row.accuracy)


def violations(row: Row, c: Constraints, baseline: float | None) -> list[str]:
    """Why ``row`` is not feasible, one phrase per constraint it breaks ([] if feasible)."""
    out = []
    if row.p95_ms > c.budget_ms:
        out.append(f"p95 {row.p95_ms:.1f} ms > {c.budget_ms:.1f} ms budget")
    drop = accuracy_drop(row, baseline)
    if drop is None:
        out.append("accuracy not measured")
    elif drop > c.max_drop + ACC_EPS:
        out.append(f"drops {drop:.1f} pts > {c.max_drop:g}")
    if c.memory_mb is not None and row.rss_mb > c.memory_mb:
        out.append(f"peak RSS {row.rss_mb:.0f} MB > {c.memory_mb:g} MB")
    return out


def _rank(row: Row) -> tuple:
    """Best first: most accurate, then lower p95, smaller file, lower RSS, name."""
    acc = round(row.accuracy, 9) if row.accuracy is not None else float("-inf")
    return (-acc, row.p95_ms, row.size_mb, row.rss_mb, row.name)


def pareto_front(rows: Sequence[Row]) -> list[Row]:
    """Rows no other row beats on both accuracy (higher) and p95 latency (lower), fastest
    first. Rows without an accuracy are left out."""
    scored = sorted((r for r in rows if r.accuracy is not None), key=lambda r: (r.p95_ms, _rank(r)))
    front: list[Row] = []
    for r in scored:
        if not front or r.accuracy > front[-1].accuracy + ACC_EPS:  # type: ignore[operator]
            front.append(r)
    return front


def select(rows: Sequence[Row], c: Constraints, baseline: float | None) -> Selection:
    """The pick: the most accurate feasible row; else the nearest miss, said plainly."""
    feasible = sorted((r for r in rows if not violations(r, c, baseline)), key=_rank)
    if feasible:
        best = feasible[0]
        drop = accuracy_drop(best, baseline)
        return Selection(best, feasible, None, (
            f"recommended: {best.name}: top-1 {best.accuracy:.3f} ({drop:+.1f} pts vs unpruned "
            f"FP32), p95 {best.p95_ms:.1f} ms <= {c.budget_ms:.1f} ms budget"
        ))  # fmt: skip
    miss, why = nearest_miss(rows, c, baseline)
    if miss is None:
        return Selection(None, [], None, "no candidate was measured")
    broken = "; ".join(violations(miss, c, baseline))
    return Selection(None, [], miss, (
        f"no candidate meets p95 <= {c.budget_ms:.1f} ms at <= {c.max_drop:g} pts drop"
        + (f" and <= {c.memory_mb:g} MB" if c.memory_mb is not None else "")
        + f" ({len(rows)} measured); nearest miss ({why}): {miss.name} ({broken})"
    ))  # fmt: skip


def nearest_miss(rows: Sequence[Row], c: Constraints, baseline: float | None):
    """(row, why it is the nearest) when nothing is feasible; (None, "") for no rows."""
    if not rows:
        return None, ""

    def fails(r: Row, what: str) -> bool:
        return any(v.startswith(what) for v in violations(r, c, baseline))

    accurate = [r for r in rows if not fails(r, "drops") and not fails(r, "accuracy")]
    accurate = [r for r in accurate if not fails(r, "peak RSS")]
    if accurate:
        return min(accurate, key=lambda r: (r.p95_ms, _rank(r))), "fastest within the floor"
    fast = [r for r in rows if not fails(r, "p95") and not fails(r, "peak RSS")]
    if fast:
        return min(fast, key=_rank), "most accurate within the budget"
    return min(rows, key=lambda r: (r.p95_ms, _rank(r))), "fastest overall"


def search_order(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Most-pruned (fastest) first, so that :func:`skip_reason` can rule out larger models."""
    return sorted(candidates, key=lambda k: -k.drop)  # stable: the space's order within a level


def skip_reason(cand: Candidate, rows: Sequence[Row], c: Constraints) -> str | None:
    """Why ``cand`` need not be measured: a more-pruned model of the same precision, backend
    and threads was over the latency budget (or the memory); a larger one can only be slower
    (and bigger). None: measure it."""
    for r in rows:
        k = r.candidate
        if k.family != cand.family or k.drop <= cand.drop:
            continue
        if r.p95_ms > c.budget_ms:
            return f"{r.name} is already over the budget (p95 {r.p95_ms:.1f} ms)"
        if c.memory_mb is not None and r.rss_mb > c.memory_mb:
            return f"{r.name} already needs {r.rss_mb:.0f} MB"
    return None
