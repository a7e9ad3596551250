"""`stagewatch dashboards publish`: create or update the folder, dashboards and alert rules by uid.

Idempotent by construction: everything has a fixed uid; the folder is created only when
`GET /api/folders/{uid}` says 404; dashboards are saved with `overwrite: true` (create or replace by
uid); each alert rule is created (POST) when `GET /api/v1/provisioning/alert-rules/{uid}` says 404 and
replaced (PUT) otherwise; finally the rule group's evaluation interval is set. Running it twice changes
nothing the second time but versions. All calls go through grafana-client.

The data source is not published: its password must stay in Grafana's environment, so it comes from
the provisioning file that `stagewatch dashboards build` writes (or is created once by hand).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from dashboards import alerts
from dashboards.build import BuildOptions, all_dashboards, to_json

log = logging.getLogger("stagewatch.dashboards.publish")

TOKEN_ENV = "GRAFANA_TOKEN"


class PublishError(RuntimeError):
    """Publishing could not start or a Grafana call failed; the message says which."""


@dataclass
class PublishReport:
    folder: str = ""  # "created", "updated" or "unchanged"
    dashboards: list[str] = field(default_factory=list)
    rules_created: list[str] = field(default_factory=list)
    rules_updated: list[str] = field(default_factory=list)


def connect(url: str, token: str | None = None, timeout: float = 10.0) -> GrafanaApi:
    """A client for `url`, authenticated with the token (default: $GRAFANA_TOKEN) or user:pass in the URL."""
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    if not token and "@" not in url:
        raise PublishError(f"No Grafana credentials: set ${TOKEN_ENV} (a service account token) "
                           "or put user:password in the URL.")
    return GrafanaApi.from_url(url, credential=token or None, timeout=timeout)


def _missing(exc: GrafanaClientError) -> bool:
    return getattr(exc, "status_code", None) == 404


def publish(api: GrafanaApi, *, build_opts: BuildOptions = BuildOptions(),
            alert_opts: alerts.AlertOptions = alerts.AlertOptions(),
            message: str = "stagewatch dashboards publish") -> PublishReport:
    report = PublishReport()
    uid, title = alert_opts.folder_uid, alert_opts.folder_title

    try:
        folder = api.folder.get_folder(uid)
    except GrafanaClientError as exc:
        if not _missing(exc):
            raise
        api.folder.create_folder(title, uid=uid)
        report.folder = "created"
    else:
        if folder.get("title") != title:
            api.folder.update_folder(uid, title=title, overwrite=True)
            report.folder = "updated"
        else:
            report.folder = "unchanged"

    for duid, model in all_dashboards(build_opts).items():
        body = to_json(model)
        body.pop("id", None)
        api.dashboard.update_dashboard({"dashboard": body, "folderUid": uid, "overwrite": True, "message": message})
        report.dashboards.append(duid)

    rules = alerts.to_json(alerts.rules(alert_opts))
    for rule in rules:
        try:
            api.alertingprovisioning.get_alertrule(rule["uid"])
        except GrafanaClientError as exc:
            if not _missing(exc):
                raise
            api.alertingprovisioning.create_alertrule(rule)
            report.rules_created.append(rule["uid"])
        else:
            api.alertingprovisioning.update_alertrule(rule["uid"], rule)
            report.rules_updated.append(rule["uid"])
    api.alertingprovisioning.update_rule_group(uid, alert_opts.rule_group, {
        "title": alert_opts.rule_group, "folderUid": uid, "interval": alert_opts.interval_s, "rules": rules})
    log.info("published folder=%s dashboards=%d rules_created=%d rules_updated=%d", report.folder,
             len(report.dashboards), len(report.rules_created), len(report.rules_updated))
    return report


def publish_url(url: str, *, token: str | None = None, **kw: Any) -> PublishReport:
    try:
        return publish(connect(url, token), **kw)
    except GrafanaClientError as exc:
        raise PublishError(f"Grafana at {url} refused a call: {exc}") from exc


__all__ = ["publish", "publish_url", "connect", "PublishReport", "PublishError", "TOKEN_ENV"]
