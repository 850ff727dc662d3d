"""Collectors: plain classes whose async `collect()` returns metric families, built fresh per scrape."""
