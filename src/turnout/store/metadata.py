"""The metadata DB's reads and writes in one namespace (`from turnout.store import metadata
as md`). Each record family lives in its own module (`models`, `deployments`, `tokens`,
`audit`, `workers`; leases in `leases`, rollouts in `rollouts`, jobs in `jobs`); this
module only gathers the first ones for callers that use several. Callers own the
transaction."""

from __future__ import annotations

from turnout.store.audit import audit, list_audit
from turnout.store.clock import aware, now
from turnout.store.deployments import (
    active_revisions,
    add_revision,
    count_deployments,
    find_deployment,
    get_deployment,
    get_deployment_retrain_state,
    get_retrain_policy,
    get_revision,
    get_rollout_plan,
    insert_deployment,
    list_deployments,
    list_revisions,
    retrain_policies,
    routing_fingerprint,
    set_retrain_policy,
    set_retrain_state,
    set_rollout_plan,
)
from turnout.store.models import (
    find_model,
    find_version,
    get_model,
    get_version,
    insert_version,
    list_models,
    list_versions,
    lock_or_create_model,
    next_version_number,
)
from turnout.store.tokens import (
    find_token,
    insert_token,
    list_tokens,
    revoke_token,
    unrevoked_tokens,
)
from turnout.store.workers import LIGHT_WORKER_COLUMNS, forget_worker, list_workers, report_worker

__all__ = [
    "LIGHT_WORKER_COLUMNS",
    "active_revisions",
    "add_revision",
    "audit",
    "aware",
    "count_deployments",
    "find_deployment",
    "find_model",
    "find_token",
    "find_version",
    "forget_worker",
    "get_deployment",
    "get_deployment_retrain_state",
    "get_model",
    "get_retrain_policy",
    "get_revision",
    "get_rollout_plan",
    "get_version",
    "insert_deployment",
    "insert_token",
    "insert_version",
    "list_audit",
    "list_deployments",
    "list_models",
    "list_revisions",
    "list_tokens",
    "list_versions",
    "list_workers",
    "lock_or_create_model",
    "next_version_number",
    "now",
    "report_worker",
    "retrain_policies",
    "revoke_token",
    "routing_fingerprint",
    "set_retrain_policy",
    "set_retrain_state",
    "set_rollout_plan",
    "unrevoked_tokens",
]
