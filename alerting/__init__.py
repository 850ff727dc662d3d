"""Alert routing helpers: business events to Alertmanager, and Alertmanager webhook intake."""
