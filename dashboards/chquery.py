"""Our query type for the Grafana ClickHouse plugin (grafana-clickhouse-datasource), for the SDK.

grafana-foundation-sdk ships query types for Prometheus, Loki, ... but none for ClickHouse, so a panel
built with it would carry an untyped query bag. This is the plugin's raw-SQL query model (its
`CHSqlQuery`: `editorType: "sql"`, `queryType`, `rawSql`, and the backend's `format`, sqlutil's
FormatQueryOption: 0 = time series, 1 = table), as a cog `Dataquery` with a builder. Registering it
with the SDK runtime makes `Dashboard.from_json` give back `ClickHouseQuery` objects, which is how
the tests prove the built JSON loads back through the SDK's models.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as dm

DATASOURCE_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_UID = "stagewatch-clickhouse"
DATASOURCE_NAME = "stagewatch ClickHouse"


class Format(IntEnum):
    """sqlutil.FormatQueryOption, as the plugin's backend reads `format`."""

    TIME_SERIES = 0
    TABLE = 1


_QUERY_TYPE = {Format.TIME_SERIES: "timeseries", Format.TABLE: "table"}


def datasource_ref(uid: str = DATASOURCE_UID) -> dm.DataSourceRef:
    return dm.DataSourceRef(type_val=DATASOURCE_TYPE, uid=uid)


class ClickHouseQuery(cogvariants.Dataquery):
    """One raw-SQL ClickHouse query of a panel or an alert rule."""

    def __init__(self, raw_sql: str = "", ref_id: str = "A", format: Format = Format.TABLE,
                 datasource_uid: str = DATASOURCE_UID, hide: bool | None = None) -> None:
        self.raw_sql = raw_sql
        self.ref_id = ref_id
        self.format = Format(format)
        self.datasource_uid = datasource_uid
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": {"type": DATASOURCE_TYPE, "uid": self.datasource_uid},
            "editorType": "sql",
            "queryType": _QUERY_TYPE[self.format],
            "format": int(self.format),
            "rawSql": self.raw_sql,
        }
        if self.hide is not None:
            out["hide"] = self.hide
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        ds = data.get("datasource") or {}
        return cls(raw_sql=data.get("rawSql", ""), ref_id=data.get("refId", "A"),
                   format=Format(int(data.get("format", Format.TABLE))),
                   datasource_uid=ds.get("uid", DATASOURCE_UID), hide=data.get("hide"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClickHouseQuery) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"ClickHouseQuery(ref_id={self.ref_id!r}, format={self.format.name}, raw_sql={self.raw_sql[:60]!r}...)"


class ClickHouseQueryBuilder(cogbuilder.Builder[ClickHouseQuery]):
    """Builder in the SDK's style: `ClickHouseQueryBuilder().sql("SELECT ...").table()`."""

    def __init__(self) -> None:
        self._internal = ClickHouseQuery()

    def build(self) -> ClickHouseQuery:
        return self._internal

    def sql(self, raw_sql: str) -> Self:
        self._internal.raw_sql = raw_sql
        return self

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def table(self) -> Self:
        self._internal.format = Format.TABLE
        return self

    def time_series(self) -> Self:
        self._internal.format = Format.TIME_SERIES
        return self

    def datasource_uid(self, uid: str) -> Self:
        self._internal.datasource_uid = uid
        return self


def register() -> None:
    """Teach the SDK runtime to decode ClickHouse queries (idempotent)."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=DATASOURCE_TYPE, from_json_hook=ClickHouseQuery.from_json))


register()

__all__ = ["ClickHouseQuery", "ClickHouseQueryBuilder", "Format", "DATASOURCE_TYPE", "DATASOURCE_UID",
           "DATASOURCE_NAME", "datasource_ref", "register"]
