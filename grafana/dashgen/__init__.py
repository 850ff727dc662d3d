"""Telltale's Grafana dashboards as code (grafana-foundation-sdk, Grafana 11.6 schema).

`python -m grafana.dashgen` (or `make dashboards`) writes grafana/dashboards/<Folder>/<uid>.json; the JSON is
committed, and tests/test_grafana_dashboards.py fails when it differs from what this code generates.
"""
