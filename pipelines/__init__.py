"""Runnable Apache Beam jobs: build a reference profile, check data against it."""
