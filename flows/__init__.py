"""Prefect flows, alerts, drift history and the dashboard for divtransforms.

Importing this package does not import Prefect: `divmon check` and `divmon dashboard` work
without it. Modules that need Prefect import it themselves (flows.check, flows.reference, ...).
"""
