"""Earmark cloud pipeline: ingest, recognition and the clip store (see the uplink issue)."""
