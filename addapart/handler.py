"""AWS Lambda entry point for AddAPart (SQS trigger with ReportBatchItemFailures).

All logic lives in loglake.addapart; this file holds only the container-lifetime
state: the config and the partition cache survive between invocations.
"""
from loglake import logs
from loglake.addapart import AddAPart, handle_lambda_event
from loglake.config import load_config

logs.setup()
_app = AddAPart(load_config())


def handler(event, context):
    return handle_lambda_event(event, _app, context)
