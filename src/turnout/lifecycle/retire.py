"""Archive and delete: versions, models and deployments leave service on purpose.

Nothing that live traffic or a rollout still needs can be removed (409 naming what needs
it). Archived versions stay readable and keep serving where they already serve, but are
never newly deployed, routed or rolled out. Every action is audited.
"""

from __future__ import annotations

from turnout.errors import Conflict
from turnout.store import metadata as md
from turnout.store import removal
from turnout.store.db import Database
from turnout.store.records import VersionRecord


def check_routable(record: VersionRecord) -> None:
    """Refuse to deploy or route an archived version."""
    if record.archived_at is not None:
        raise Conflict(
            f"version {record.ref} is archived (since {record.archived_at:%Y-%m-%d %H:%M} UTC); "
            "it cannot be newly deployed or routed"
        )


class Retirement:
    def __init__(self, db: Database) -> None:
        self.db = db

    def archive_version(self, model: str, version: int, *, actor: str) -> VersionRecord:
        with self.db.write() as conn:
            record = md.get_version(conn, model, version)
            owner = md.get_model(conn, model)
            rollouts = removal.rolled_out_versions(conn, owner.id).get(version)
            if rollouts:
                raise Conflict(
                    f"version {record.ref} is being rolled out ({', '.join(rollouts)}); "
                    "abort the rollout before archiving it"
                )
            if record.archived_at is None:
                removal.set_archived(conn, record.id, md.now())
                md.audit(conn, actor=actor, action="version.archive", target=record.ref,
                         detail={})  # fmt: skip
            return md.get_version(conn, model, version)

    def delete_version(self, model: str, version: int, *, actor: str) -> None:
        with self.db.write() as conn:
            record = md.get_version(conn, model, version)
            owner = md.get_model(conn, model)
            users = removal.users_of_versions(conn, owner.id).get(version)
            if users:
                raise Conflict(
                    f"version {record.ref} is in use by {', '.join(users)}; "
                    "route it away (or wait for the rollout to end) first"
                )
            removal.delete_version(conn, record.id)
            md.audit(conn, actor=actor, action="version.delete", target=record.ref,
                     detail={"artifact": record.artifact.to_dict()})  # fmt: skip

    def delete_model(self, model: str, *, actor: str) -> None:
        with self.db.write() as conn:
            record = md.get_model(conn, model)
            deployments = removal.deployments_of_model(conn, record.id)
            if deployments:
                raise Conflict(
                    f"model {model!r} has deployments ({', '.join(deployments)}); delete them first"
                )
            versions = [v.version for v in md.list_versions(conn, model)]
            removal.delete_model(conn, record.id)
            md.audit(conn, actor=actor, action="model.delete", target=model,
                     detail={"versions": versions})  # fmt: skip

    def delete_deployment(self, name: str, *, actor: str) -> None:
        """Remove the deployment; gateways stop serving it at their next routing refresh."""
        with self.db.write() as conn:
            deployment = md.get_deployment(conn, name)
            busy = removal.busy_deployment(conn, deployment.id)
            if busy:
                raise Conflict(
                    f"deployment {name!r} cannot be deleted now: {'; '.join(busy)} "
                    "(abort or cancel it first)"
                )
            revision = md.get_revision(conn, deployment, deployment.active_revision)
            removal.delete_deployment(conn, deployment.id)
            md.audit(conn, actor=actor, action="deployment.delete", target=name,
                     detail={"model": deployment.model, "revision": revision.revision,
                             "config": revision.config.to_dict()})  # fmt: skip
