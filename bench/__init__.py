"""`make bench`: Telltale's figures next to baselines measured in the same run."""
