"""`python -m exporter [--host H] [--port P]`: the same as `telltale exporter`."""

from telltale.exporter.main import cli

cli()
