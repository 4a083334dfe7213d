"""Old import path of `nextpick_local.standin.aws_resources`, kept only for tests/integration/
test_template.py and test_sample_events.py (owned elsewhere); delete once they import the new path."""

from nextpick_local.standin.aws_resources import create_stack, find_template, load_template, plan_stack

__all__ = ["create_stack", "find_template", "load_template", "plan_stack"]
