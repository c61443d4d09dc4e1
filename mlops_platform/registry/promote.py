"""Promote the best run's logged model to a registered model alias, and roll it back.

Correctness under concurrency. MLflow's alias update is last-writer-wins and a promoter only has the
tracking server's URL, so no lock can cover promoters on machines that share nothing. The guarantee
therefore comes from compare and re-check: after every alias write the promoter re-reads the champion
and re-evaluates the best run from a fresh search, and writes again while the champion is beaten.
Whoever writes last does that re-check after its own write, on a search that sees every run that
existed then, so the alias cannot be left on a worse model. The locks of locks.py (a file lock, plus a
PostgreSQL advisory lock when `lock_uri` is given) only keep promoters from racing in the common case,
which saves duplicate registrations and alias churn. A duplicate version registered by a race is
resolved to the lowest version number of the same logged model, so racing promoters converge on the
same version.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from mlops_platform.config.promote import PromoteConfig
from mlops_platform.errors import UserError
from mlops_platform.registry.best import (
    LOWEST_FLOAT,
    BestRun,
    Mode,
    NoQualifyingRunError,
    best_in,
    few_ranked,
    filter_number,
    metric_key,
    resolve_mode,
)
from mlops_platform.registry.locks import DEFAULT_LOCK_TIMEOUT_S, promotion_lock
from mlops_platform.registry.names import invalid_model_name_message
from mlops_platform.registry.search import (
    RunRecord,
    SearchError,
    children_clause,
    client_for,
    combine_filters,
    entry_point_clause,
    is_not_found,
    iter_runs,
    resolve_experiment_ids,
)
from mlops_platform.tracking.tags import (
    ROLE_TAG,
    RUN_USER_TAG,
    TAG_METRIC,
    TAG_MODE,
    TAG_PROMOTED_AT,
    TAG_REASON,
    TAG_ROLLED_BACK,
    TAG_RUN_ID,
    TAG_VALUE,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

PREVIOUS_ALIAS = "previous"
# The promote job's defaults, read from its config (their only home).
DEFAULT_ALIAS: str = PromoteConfig.model_fields["alias"].default
DEFAULT_MIN_DELTA: float = PromoteConfig.model_fields["min_delta"].default
BASELINE_VALUE = "baseline"
# Re-check rounds before giving up on a champion that keeps moving (runs arriving without pause).
MAX_ROUNDS = 20


class RegistryError(UserError):
    """A registry operation cannot proceed: unknown model, no alias to roll back to, bad alias."""


@dataclass(frozen=True)
class Champion:
    """What an alias points at now, and that version's value of the metric being compared."""

    version: str
    run_id: str | None
    source: str
    value: float | None


@dataclass(frozen=True)
class PromotionDecision:
    """What promote_best did (or, with dry_run, would do) and why."""

    promoted: bool
    reason: str
    model_name: str
    alias: str
    metric: str
    mode: str
    run_id: str
    value: float
    model_uri: str
    version: str | None  # the version of the best run's model (None when it was not registered)
    champion_version: str | None  # what the alias pointed at before
    champion_value: float | None
    baseline_run_id: str | None
    baseline_value: float | None
    dry_run: bool
    run_user: str | None = None  # who created the best run (see RunRecord.created_by)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        verb = ("would promote" if self.dry_run else "promoted") if self.promoted else "kept"
        target = f"{self.model_name}@{self.alias}"
        if self.promoted:
            shown = f"version {self.version}" if self.version else self.model_uri
            by = f" by user {self.run_user}" if self.run_user else " by an unknown user"
            return f"{verb} {target} -> {shown} (run {self.run_id}{by}): {self.reason}"
        current = f"version {self.champion_version}" if self.champion_version else "no champion"
        return f"{verb} {target} at {current}: {self.reason}"


@dataclass(frozen=True)
class RollbackResult:
    model_name: str
    alias: str
    from_version: str
    to_version: str

    def summary(self) -> str:
        return (
            f"rolled back {self.model_name}@{self.alias}: version {self.from_version} -> {self.to_version} "
            f"(@{PREVIOUS_ALIAS} now points at {self.from_version})"
        )


# ------------------------------------------------------------------------------------------ reading


def check_model_name(name: str) -> None:
    message = invalid_model_name_message(name)
    if message is not None:
        raise RegistryError(message)


def check_alias(alias: str) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.utils import validation

    # MLflow's own rule for alias names (characters, length): `_validate_alias_name` since MLflow 3.18,
    # `_validate_model_alias_name` before it.
    validate_alias_name = getattr(validation, "_validate_alias_name", None)
    if validate_alias_name is None:
        validate_alias_name = validation._validate_model_alias_name
    if alias == PREVIOUS_ALIAS:
        raise RegistryError(f"invalid alias {alias!r}: it is reserved for the version the champion replaced")
    try:
        validate_alias_name(alias)
    except MlflowException as error:
        raise RegistryError(f"invalid alias {alias!r}: {error.message}") from None


def get_aliases(client: MlflowClient, model_name: str) -> dict[str, str] | None:
    """alias -> version of a registered model, or None when the model does not exist."""
    try:
        model = client.get_registered_model(model_name)
    except Exception as error:
        if is_not_found(error):
            return None
        raise
    return dict(model.aliases or {})


def run_metric(client: MlflowClient, run_id: str | None, metric: str) -> float | None:
    if not run_id:
        return None
    try:
        run = RunRecord.from_run(client.get_run(run_id))
    except Exception as error:
        if is_not_found(error):
            return None
        raise
    return run.metric(metric)


def current_champion(
    client: MlflowClient, model_name: str, alias: str, metric: str
) -> tuple[dict[str, str] | None, Champion | None]:
    """The model's aliases (None: no such model) and what `alias` points at."""
    aliases = get_aliases(client, model_name)
    if not aliases or alias not in aliases:
        return aliases, None
    version = client.get_model_version(model_name, aliases[alias])
    tags = version.tags or {}
    if tags.get(TAG_METRIC) == metric and tags.get(TAG_RUN_ID) == version.run_id and TAG_VALUE in tags:
        # Recorded at promotion from the same run: saves a round trip on every promotion.
        value: float | None = float(tags[TAG_VALUE])
    else:
        value = run_metric(client, version.run_id, metric)
    return aliases, Champion(version.version, version.run_id, version.source, value)


def best_baseline(
    client: MlflowClient, experiment_ids: list[str], metric: str, mode: Mode
) -> RunRecord | None:
    """The best FINISHED run tagged mlops.role=baseline that has the metric, if any (ties: the earlier).

    Baselines are few, so they are ranked here (best.few_ranked): ordered by the metric, MLflow joins
    and sorts every run of the experiment that has it (SQLite, 100,000 runs: 0.98 s against 0.22 s).
    """
    key = metric_key(metric)
    tagged = f"{key} >= {LOWEST_FLOAT} AND tags.`{ROLE_TAG}` = '{BASELINE_VALUE}'"
    few = few_ranked(client, experiment_ids, metric, mode, tagged)
    if few is not None:
        return few[0] if few else None
    filter_ = f"attributes.status = 'FINISHED' AND {tagged}"
    order = [f"{key} {'DESC' if mode == 'max' else 'ASC'}", "attributes.start_time ASC"]
    for run in iter_runs(client, experiment_ids, filter_, order, page_size=10):
        record = RunRecord.from_run(run)
        if record.metric(metric) is not None:
            return record
    return None


def rolled_back_models(client: MlflowClient, model_name: str) -> frozenset[str]:
    """Logged model ids whose version of `model_name` carries the rolled-back tag."""
    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except Exception as error:
        if is_not_found(error):
            return frozenset()
        raise
    return frozenset(v.source.removeprefix("models:/") for v in versions if TAG_ROLLED_BACK in (v.tags or {}))


def model_size_bytes(client: MlflowClient, model_id: str, path: str | None = None) -> int:
    total = 0
    for info in client.list_logged_model_artifacts(model_id, path):
        total += model_size_bytes(client, model_id, info.path) if info.is_dir else (info.file_size or 0)
    return total


def reaching_champion(metric: str, mode: Mode, champion: Champion | None) -> str | None:
    """A filter for the runs at least as good as the champion, or None when it has no usable value.

    Why: the ranked search sorts every run that has the metric (100,000 at scale, 1-3 s on the loaded
    2-core machine), while the runs that reach the champion are few and quick to find (best.few_ranked;
    on PostgreSQL through store_indexes' latest_metrics index). The best run by the full search is the
    first of these whenever its value reaches the champion's (same order, and these runs come first in
    it); when none does, nothing can beat the champion.
    """
    if champion is None or champion.value is None or not math.isfinite(champion.value):
        return None
    return f"{metric_key(metric)} {'>=' if mode == 'max' else '<='} {filter_number(champion.value)}"


# ------------------------------------------------------------------------------------------ judging


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str
    baseline: RunRecord | None = None  # set when the baseline gate was reached


def judge(
    client: MlflowClient,
    best: BestRun,
    champion: Champion | None,
    lookup_baseline: Callable[[], RunRecord | None],
    alias: str,
    min_delta: float,
    max_model_size_mb: float | None,
) -> Verdict:
    """The gates, cheapest first: already champion, beats champion, beats baseline, size."""
    from mlops_platform.evaluation import improvement, is_better

    metric, mode, value = best.metric, best.mode, best.value
    if champion is not None and champion.run_id == best.run_id and champion.source == best.model_uri:
        return Verdict(False, f"run {best.run_id} (version {champion.version}) is already @{alias}")
    reasons = []
    if champion is None:
        reasons.append(f"no @{alias} yet")
    elif champion.value is None:
        reasons.append(f"@{alias} version {champion.version} has no {metric}")
    else:
        gain = improvement(mode, value, champion.value)
        if not gain > min_delta:
            return Verdict(
                False,
                f"{metric}={value:g} does not beat @{alias} version {champion.version} "
                f"({metric}={champion.value:g}) by more than min_delta={min_delta:g}",
            )
        reasons.append(
            f"{metric}={value:g} beats @{alias} version {champion.version} ({champion.value:g}) by {gain:g}"
        )
    baseline = lookup_baseline()
    if baseline is not None:
        baseline_value = baseline.metric(metric)
        if baseline.run_id == best.run_id or not is_better(mode, value, baseline_value):
            return Verdict(
                False,
                f"{metric}={value:g} of run {best.run_id} does not beat the baseline run {baseline.run_id} "
                f"({metric}={baseline_value:g})",
                baseline,
            )
        reasons.append(f"beats the baseline ({baseline_value:g})")
    if max_model_size_mb is not None:
        size_mb = model_size_bytes(client, best.model_id) / 1e6
        if size_mb > max_model_size_mb:
            return Verdict(
                False,
                f"model {best.model_id} is {size_mb:.2f} MB, over max_model_size_mb={max_model_size_mb:g}",
                baseline,
            )
        reasons.append(f"size {size_mb:.3f} MB")
    return Verdict(True, "; ".join(reasons), baseline)


# ------------------------------------------------------------------------------------------ writing


def versions_of(client: MlflowClient, model_name: str, best: BestRun) -> list[ModelVersion]:
    """Usable versions of the best run's logged model, lowest version first."""
    found = client.search_model_versions(f"name = '{model_name}' AND run_id = '{best.run_id}'")
    matching = [v for v in found if v.source == best.model_uri and v.status != "FAILED_REGISTRATION"]
    return sorted(matching, key=lambda v: int(v.version))


def promotion_tags(best: BestRun, reason: str) -> dict[str, str]:
    return {
        TAG_METRIC: best.metric,
        TAG_VALUE: repr(best.value),
        TAG_MODE: best.mode,
        TAG_RUN_ID: best.run_id,
        TAG_PROMOTED_AT: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        TAG_REASON: reason[:5000],
        # Who made the run this version serves: promotion is a decision about someone's code.
        RUN_USER_TAG: best.run.created_by or "unknown",
    }


def ensure_version(
    client: MlflowClient, model_name: str, best: BestRun, tags: dict[str, str], model_exists: bool = True
) -> str:
    """The version of the best run's model: the existing one (tags updated), or a new one with tags.

    When racing promoters both register, each keeps the lowest version number, and a promoter whose
    own new version lost deletes it (no alias can point at it yet), so the registry is left tidy.
    """
    existing = versions_of(client, model_name, best) if model_exists else []
    if existing:
        for key, value in tags.items():
            client.set_model_version_tag(model_name, existing[0].version, key, value)
        return existing[0].version
    if not model_exists:
        try:
            client.create_registered_model(model_name, description="Managed by mlops promote.")
        except Exception as error:  # a racing promoter created it first: fine
            if getattr(error, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                raise
    # No waiting: a SQL-backed registry creates versions READY, and polling costs a round trip.
    created = client.create_model_version(
        model_name,
        source=best.model_uri,
        run_id=best.run_id,
        tags=tags,
        await_creation_for=0,
        model_id=best.model_id,
    )
    lowest = versions_of(client, model_name, best)[0].version
    if lowest != created.version:
        client.delete_model_version(model_name, created.version)
        for key, value in tags.items():
            client.set_model_version_tag(model_name, lowest, key, value)
    return lowest


def write_promotion(
    client: MlflowClient,
    model_name: str,
    alias: str,
    version: str,
    champion: Champion | None,
) -> None:
    """Point `alias` at `version`; the replaced champion keeps `previous`."""
    if champion is not None and champion.version != version:
        client.set_registered_model_alias(model_name, PREVIOUS_ALIAS, champion.version)
    client.set_registered_model_alias(model_name, alias, version)


# ------------------------------------------------------------------------------------------ steps


@dataclass(frozen=True)
class PromotionRequest:
    """What to promote and under which gates: promote_best's arguments, checked on construction.

    `mode` None takes the metric's known direction (resolve_mode); after construction it is always
    "max" or "min".
    """

    experiment: str  # name or id, as the user gave it (errors name it)
    metric: str
    model_name: str
    mode: Mode | None = None
    alias: str = DEFAULT_ALIAS
    min_delta: float = DEFAULT_MIN_DELTA
    filter_string: str = ""
    max_model_size_mb: float | None = None
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.min_delta < 0:
            raise SearchError(f"invalid min_delta={self.min_delta}: must be >= 0")
        if self.max_model_size_mb is not None and self.max_model_size_mb <= 0:
            raise SearchError(f"invalid max_model_size_mb={self.max_model_size_mb}: must be > 0")
        check_model_name(self.model_name)
        check_alias(self.alias)
        # Frozen, so the resolved mode is set the one way a frozen dataclass allows.
        object.__setattr__(self, "mode", resolve_mode(self.metric, self.mode))

    @classmethod
    def from_config(cls, config: PromoteConfig) -> PromotionRequest:
        """The promote job's request: the config's fields of the same names, and its filter narrowed to
        a parent run's children and to an entry point."""
        same_names = {f.name: getattr(config, f.name) for f in fields(cls) if f.name != "filter_string"}
        filter_string = combine_filters(
            config.filter_string or "",
            children_clause(config.parent_run),
            entry_point_clause(config.require_entry_point),
        )
        return cls(**same_names, filter_string=filter_string)


@dataclass(frozen=True)
class Candidates:
    """Where the competing runs live: the client, the experiments' ids, and the models known READY.

    `known_ready` is shared by every round of one promotion (READY is final), so a re-check does not
    ask again about the models the previous round already saw.
    """

    client: MlflowClient
    experiment_ids: list[str]
    known_ready: set[str]


@dataclass(frozen=True)
class Round:
    """One look at the registry and the runs: the best run, the champion it faces, the gates' verdict."""

    best: BestRun
    champion: Champion | None
    model_exists: bool
    verdict: Verdict


def decide(candidates: Candidates, request: PromotionRequest, recheck: bool = False) -> Round | None:
    """Read the champion, find the best run (rolled-back models skipped), and judge it.

    With a champion, only the runs that reach its value are ranked (reaching_champion): one full
    ranking per promotion. None in a `recheck` round where no run reaches the champion (stable).
    """
    client, metric, mode = candidates.client, request.metric, request.mode
    aliases, champion = current_champion(client, request.model_name, request.alias, metric)
    # Only a rollback tags versions, and a rollback always leaves @previous behind.
    rolled_back = aliases is not None and PREVIOUS_ALIAS in aliases
    excluded = rolled_back_models(client, request.model_name) if rolled_back else frozenset()

    def ranked(extra: str = "", ranked_runs: list[RunRecord] | None = None) -> BestRun:
        return best_in(
            client,
            candidates.experiment_ids,
            metric,
            mode,  # type: ignore[arg-type]
            combine_filters(request.filter_string, extra),
            exclude_model_ids=excluded,
            label=request.experiment,
            known_ready=candidates.known_ready,
            candidates=ranked_runs,
        )

    narrow = reaching_champion(metric, mode, champion)  # type: ignore[arg-type]
    try:
        if narrow is None:
            best = ranked()
        else:
            # Usually a handful, ranked here; the ranked search when they are more than a page.
            reaching = few_ranked(
                client,
                candidates.experiment_ids,
                metric,
                mode,  # type: ignore[arg-type]
                combine_filters(request.filter_string, narrow),
            )
            best = ranked(narrow, reaching)
    except NoQualifyingRunError:
        if narrow is None:
            raise
        if recheck:
            return None
        best = ranked()  # nothing reaches the champion: the full ranking says what the best is
    verdict = judge(
        client,
        best,
        champion,
        lambda: best_baseline(client, candidates.experiment_ids, metric, mode),
        request.alias,
        request.min_delta,
        request.max_model_size_mb,
    )
    return Round(best, champion, aliases is not None, verdict)


def decision_for(
    request: PromotionRequest, round_: Round, version: str | None, promoted: bool
) -> PromotionDecision:
    """The decision a round led to; `version` is the one the alias now points at, if this call moved it."""
    best, champion, baseline = round_.best, round_.champion, round_.verdict.baseline
    if version is None and champion is not None and champion.source == best.model_uri:
        version = champion.version  # kept because it already is the champion
    return PromotionDecision(
        promoted=promoted,
        reason=round_.verdict.reason,
        model_name=request.model_name,
        alias=request.alias,
        metric=request.metric,
        mode=request.mode,
        run_id=best.run_id,
        value=best.value,
        model_uri=best.model_uri,
        version=version,
        champion_version=champion.version if champion else None,
        champion_value=champion.value if champion else None,
        baseline_run_id=baseline.run_id if baseline else None,
        baseline_value=baseline.metric(request.metric) if baseline else None,
        dry_run=request.dry_run,
        run_user=best.run.created_by,
    )


def promote_until_stable(candidates: Candidates, request: PromotionRequest) -> PromotionDecision:
    """Promote, then re-check on a fresh search until nothing beats the champion (at most MAX_ROUNDS).

    The caller holds the promotion lock; see the module docstring for why the re-check, not the lock,
    is what keeps the alias on the best model.
    """
    client, model_name, alias = candidates.client, request.model_name, request.alias
    last: PromotionDecision | None = None
    for _ in range(MAX_ROUNDS):
        round_ = decide(candidates, request, recheck=last is not None)
        if round_ is None:  # the re-check after our write: no run reaches the champion
            return last  # type: ignore[return-value]
        if not round_.verdict.promote:
            # Stable: nothing beats the champion (usually the version this call just set).
            return last or decision_for(request, round_, None, False)
        tags = promotion_tags(round_.best, round_.verdict.reason)
        version = ensure_version(client, model_name, round_.best, tags, round_.model_exists)
        write_promotion(client, model_name, alias, version, round_.champion)
        log.info("promoted %s@%s -> version %s: %s", model_name, alias, version, round_.verdict.reason)
        last = decision_for(request, round_, version, True)
    log.warning(
        "%s@%s was still changing after %d rounds; new runs keep arriving", model_name, alias, MAX_ROUNDS
    )
    return last  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------ public API


def run_promotion(
    request: PromotionRequest,
    *,
    tracking_uri: str | None = None,
    lock_uri: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
) -> PromotionDecision:
    """Carry out `request` on the server (see promote_best); a dry run decides once and moves nothing."""
    from mlops_platform.settings import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    client = client_for(uri)
    candidates = Candidates(client, resolve_experiment_ids(client, request.experiment), set())
    if request.dry_run:
        round_ = decide(candidates, request)
        assert round_ is not None  # only a re-check round answers None
        return decision_for(request, round_, None, round_.verdict.promote)
    with promotion_lock(uri, request.model_name, lock_uri, lock_timeout):
        return promote_until_stable(candidates, request)


def promote_best(
    experiment: str,
    metric: str,
    model_name: str,
    mode: Mode | None = None,
    alias: str = DEFAULT_ALIAS,
    min_delta: float = DEFAULT_MIN_DELTA,
    filter_string: str = "",
    max_model_size_mb: float | None = None,
    dry_run: bool = False,
    *,
    tracking_uri: str | None = None,
    lock_uri: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
) -> PromotionDecision:
    """Register the best run's logged model and move `alias` to it if it passes every gate.

    The gates: it is not already the champion; it beats the champion by more than `min_delta`; it
    beats the experiment's best baseline run (tag mlops.role=baseline) when there is one; its logged
    model is at most `max_model_size_mb`. The replaced champion gets alias `previous`. Running it again
    with nothing new changes nothing.

    Args:
        experiment: experiment name or id whose runs compete.
        metric: the metric to rank by; `mode` says whether higher ("max") or lower ("min") is better
            (None takes it from mlops_platform.evaluation.METRIC_DIRECTIONS).
        model_name: the registered model (created on first promotion).
        filter_string: narrows the candidates (an MLflow filter on params, tags, metrics).
        dry_run: decide, but register and move nothing.
        tracking_uri: the server; None resolves it from the environment.
        lock_uri: a PostgreSQL URI for a cross-machine advisory lock (e.g. the server's backend store).

    Raises:
        UserError: unknown experiment, malformed filter, no qualifying run, bad alias.
    """
    request = PromotionRequest(
        experiment, metric, model_name, mode, alias, min_delta, filter_string, max_model_size_mb, dry_run
    )
    return run_promotion(request, tracking_uri=tracking_uri, lock_uri=lock_uri, lock_timeout=lock_timeout)


def rollback(
    model_name: str,
    alias: str = DEFAULT_ALIAS,
    *,
    tracking_uri: str | None = None,
    lock_uri: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
) -> RollbackResult:
    """Move `alias` back to the version `previous` points at.

    `previous` then points at the demoted version, so a second rollback undoes the first. The demoted
    version is tagged mlops.rolled_back_at, and promote_best skips its run's model from then on.
    """
    from mlops_platform.settings import resolve_tracking_uri

    check_model_name(model_name)
    check_alias(alias)
    uri = resolve_tracking_uri(tracking_uri)
    client = client_for(uri)
    with promotion_lock(uri, model_name, lock_uri, lock_timeout):
        aliases = get_aliases(client, model_name)
        if aliases is None:
            raise RegistryError(f"unknown registered model {model_name!r}")
        if alias not in aliases:
            raise RegistryError(f"model {model_name!r} has no @{alias} to roll back")
        if PREVIOUS_ALIAS not in aliases:
            raise RegistryError(f"model {model_name!r} has no @{PREVIOUS_ALIAS} version to roll back to")
        current, previous = aliases[alias], aliases[PREVIOUS_ALIAS]
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        client.set_model_version_tag(model_name, current, TAG_ROLLED_BACK, now)
        if TAG_ROLLED_BACK in (client.get_model_version(model_name, previous).tags or {}):
            client.delete_model_version_tag(model_name, previous, TAG_ROLLED_BACK)
        client.set_registered_model_alias(model_name, alias, previous)
        client.set_registered_model_alias(model_name, PREVIOUS_ALIAS, current)
        client.set_model_version_tag(
            model_name, previous, TAG_REASON, f"rollback of @{alias} from version {current}"
        )
        client.set_model_version_tag(model_name, previous, TAG_PROMOTED_AT, now)
    return RollbackResult(model_name, alias, current, previous)
