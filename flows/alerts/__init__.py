"""Alerts: the alert log and outbox (:mod:`flows.alerts.outbox`), the messages and the payloads
of each target, delivery bounded in time, Prefect events and Automations, target secrets."""
