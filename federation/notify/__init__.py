"""Notify: webhook calls with Flagger's payloads (gates, load tests, events) and notifications."""
