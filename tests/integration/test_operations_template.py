"""The operations part of template.yaml holds together: every alarm watches a metric something emits,
notifies the alarm topic and is documented in docs/operations.md; the serving functions deploy
gradually and are rolled back by alarms that exist."""

from __future__ import annotations

import re
from typing import Any

import pytest

from nextpick_local.standin.aws_resources import find_template, load_template

REPO = find_template().parent
ALARM = "AWS::CloudWatch::Alarm"
GRADUAL = ("ApiFunction", "BusEventFunction", "EventLogShipperFunction")


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    resources: dict[str, Any] = load_template()["Resources"]
    return resources


def alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in resources.items() if r["Type"] == ALARM}


def watched_metrics(alarm: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, metric name, dimensions) of every metric the alarm reads."""
    if "MetricName" in alarm:
        dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        return [(alarm["Namespace"], alarm["MetricName"], dims)]
    found = []
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            found.append((metric["Namespace"], metric["MetricName"], dims))
    return found


def test_every_custom_metric_alarmed_on_is_emitted_by_the_code(resources: dict[str, Any]) -> None:
    code = "\n".join(
        path.read_text() for folder in ("functions", "training") for path in (REPO / folder).rglob("*.py")
    )
    custom = {
        (name, dims.get("status"))
        for alarm in alarms(resources).values()
        for namespace, name, dims in watched_metrics(alarm)
        if namespace == "Nextpick"
    }
    assert {name for name, _ in custom} >= {"EventLogAppendFailed", "ModelFallback", "ModelAgeSeconds"}
    for name, status in custom:
        assert f'name="{name}"' in code, f"no code emits the metric {name}"
        if status is not None:  # RetrainRuns by status: the statuses are RetrainStatus values
            assert re.search(rf'= "{status}"', code), status


def test_custom_metric_alarms_use_the_dimensions_powertools_emits(resources: dict[str, Any]) -> None:
    env = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    for alarm in alarms(resources).values():
        for namespace, _, dims in watched_metrics(alarm):
            if namespace == "Nextpick":
                assert namespace == env["POWERTOOLS_METRICS_NAMESPACE"]
                # Powertools adds the service as a dimension to every metric.
                assert dims.get("service") == env["POWERTOOLS_SERVICE_NAME"]


def test_every_alarm_notifies_the_topic_and_is_documented(resources: dict[str, Any]) -> None:
    operations = (REPO / "docs" / "operations.md").read_text()
    assert alarms(resources)
    for name, alarm in alarms(resources).items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert f"`{name}`" in operations, f"{name} is not explained in docs/operations.md"


def test_serving_functions_deploy_gradually_and_roll_back_on_existing_alarms(
    resources: dict[str, Any],
) -> None:
    for function in GRADUAL:
        properties = resources[function]["Properties"]
        assert properties["AutoPublishAlias"] == "live"
        preference = properties["DeploymentPreference"]
        assert preference["Type"].startswith(("Canary", "Linear"))
        referenced = [alarm["Ref"] for alarm in preference["Alarms"]]
        assert referenced and all(resources[name]["Type"] == ALARM for name in referenced)
        # Alarms on the function's own errors watch the alias the deployment shifts.
        for name in referenced:
            for namespace, metric, dims in watched_metrics(resources[name]["Properties"]):
                if namespace == "AWS/Lambda" and metric == "Errors":
                    assert dims["Resource"] == {"Fn::Sub": f"${{{function}}}:live"}


def test_the_dashboard_shows_every_alarm(resources: dict[str, Any]) -> None:
    body = resources["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for name in alarms(resources):
        assert f"${{{name}.Arn}}" in body, name
