"""Grafana dashboards, alert rules and provisioning for stagewatch, as code (see docs/dashboards.md).

Every panel and rule is built from the shared SQL of schemas/queries.py (headline numbers) and
dashboards/queries.py (time windows, histograms, pipeline health), so Grafana shows the numbers
`stagewatch status` prints.
"""
