"""The template's stack in moto for the integration tests: `nextpick_local.standin.aws_resources`, the
same loader (cfn-lint decoder -> SAM translator -> moto's CloudFormation) the local stack uses.
Re-exported here for the tests (and bench) that import it from this path."""

from nextpick_local.standin.aws_resources import (
    BUCKET,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    DEFAULT_STACK_NAME,
    DELIVERY_STREAM,
    EVENT_BUS,
    NAME_PROPERTIES,
    QUEUE,
    ROLE,
    SERVERLESS_FUNCTION,
    TABLE,
    Stack,
    TemplateError,
    create_stack,
    find_template,
    load_template,
    physical_name,
    plan_stack,
)

__all__ = [
    "BUCKET",
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_REGION",
    "DEFAULT_STACK_NAME",
    "DELIVERY_STREAM",
    "EVENT_BUS",
    "NAME_PROPERTIES",
    "QUEUE",
    "ROLE",
    "SERVERLESS_FUNCTION",
    "TABLE",
    "Stack",
    "TemplateError",
    "create_stack",
    "find_template",
    "load_template",
    "physical_name",
    "plan_stack",
]
