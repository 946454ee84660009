"""Consent registry, companion app and the human-review pool (see the consent issue)."""
