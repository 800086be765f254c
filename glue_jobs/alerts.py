"""AWS Glue job (optional, AlertsRunner=on): detection rules through Athena -> the alarm topic."""
from loglake.jobs import alerts

alerts()
