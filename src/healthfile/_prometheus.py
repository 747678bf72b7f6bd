"""Prometheus textfile rendering of a report, for node_exporter's textfile collector.

Rendered with prometheus_client (the optional extra ``healthfile[prometheus]``); written by
healthfile's own atomic writer, never by ``write_to_textfile`` (predictable temp name, no
fsync, temp file left behind on cancellation).
"""

from __future__ import annotations

from typing import Any, get_args

from ._report import HealthReport, HealthStatus

__all__ = ["render_textfile", "require_prometheus_client"]

_STATUSES: tuple[str, ...] = get_args(HealthStatus)


def require_prometheus_client() -> None:
    """Raise a clear ImportError when the ``prometheus`` extra is not installed."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "prometheus_file needs prometheus_client (the extra healthfile[prometheus]): "
            "pip install prometheus_client"
        ) from exc


def render_textfile(report: HealthReport) -> bytes:
    """Render ``report`` in the Prometheus text exposition format."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    app = report.app_name

    def gauge(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Any:
        # Every metric carries app="…", so that many apps' files share one textfile directory.
        return Gauge(name, documentation, ("app", *labels), registry=registry)

    gauge("healthfile_up", "1 when the application reports online, else 0").labels(app=app).set(
        1 if report.status == "online" else 0
    )
    status = gauge("healthfile_status", "1 for the current status, 0 for the others", ("status",))
    for name in _STATUSES:
        status.labels(app=app, status=name).set(1 if report.status == name else 0)
    up = gauge(
        "healthfile_check_up",
        "1 when the check passes, else 0; critical: whether its failure degrades the app",
        ("check", "critical"),
    )
    duration = gauge(
        "healthfile_check_duration_seconds", "How long the check took in this cycle", ("check",)
    )
    failures = gauge(
        "healthfile_check_consecutive_failures", "Failures of the check in a row", ("check",)
    )
    groups: dict[str, bool] = {}
    for name, result in report.checks.items():
        critical = "true" if result.critical else "false"
        up.labels(app=app, check=name, critical=critical).set(1 if result.status == "pass" else 0)
        for group in result.groups:
            groups[group] = groups.get(group, True) and result.status != "fail"
        duration.labels(app=app, check=name).set(result.duration_ms / 1000)
        failures.labels(app=app, check=name).set(result.consecutive_failures)
    if groups:  # a family without samples would only be noise
        group_up = gauge(
            "healthfile_group_up",
            "1 when no check of the group fails (warnings included), else 0: the verdict of "
            "healthfile check --group on a fresh file",
            ("group",),
        )
        for group, group_ok in groups.items():
            group_up.labels(app=app, group=group).set(1 if group_ok else 0)
    gauge(
        "healthfile_report_timestamp_seconds", "When the report was made, in Unix seconds"
    ).labels(app=app).set(report.timestamp.timestamp())
    gauge(
        "healthfile_info",
        "The application's version and the contract version",
        ("app_version", "api_version"),
    ).labels(app=app, app_version=report.app_version, api_version=report.api_version).set(1)
    data: bytes = generate_latest(registry)
    return data
