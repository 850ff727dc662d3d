"""The exporter sidecar: Postgres, Redis, queues, disk, Terraform, Docker and SQL business data as gauges."""
