"""Read endpoints of the stored reports: the filtered, paginated list, one report, and its CSV download."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from service.auth.guards import principal_of, require_report_reader, staff_only
from service.auth.keys import for_keys
from service.core.errors import FieldError, InvalidInput, NotFound
from service.core.listing import Page, PageNumber, build_page
from service.core.rows import disorder, valid_id
from service.reports import queries
from service.reports.export import to_csv
from service.reports.schemas import Report, ReportKind
from service.web.resources import Resources

SCOPE = re.compile(r"platform|community:[1-9][0-9]{0,18}")  # what the generators write
_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


async def _load(request: Request[Any, Any, Any], resources: Resources, report_id: int) -> Report:
    report = await resources.reads.run(lambda conn: queries.one(conn, valid_id(report_id, "report")))
    if report is None:
        raise NotFound(f"No report {report_id}")
    require_report_reader(principal_of(request), report.scope)
    return report


class ReportsController(Controller):
    """Reports stored by the daily generators (`analytics`, `community`, `geo_effectiveness`)."""

    path = "/api/reports"
    tags = ["reports"]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @get(
        "/",
        summary="Stored reports, newest period first; filter by kind, scope and period start (staff)",
        guards=[staff_only],
    )
    async def list_reports(
        self,
        request: Request[Any, Any, Any],
        resources: NamedDependency[Resources],
        kind: FromQuery[ReportKind | None] = None,
        # `scope` is a name Litestar reserves (the ASGI scope), so the parameter has another name in Python; it
        # is checked below because Litestar's own errors would name the Python one.
        report_scope: Annotated[
            str | None, QueryParameter(name="scope", description="`platform` or `community:<id>`")
        ] = None,
        since: Annotated[date | None, QueryParameter(description="Period starting on or after this day")] = None,
        until: Annotated[date | None, QueryParameter(description="Period starting on or before this day")] = None,
        page: PageNumber = 1,
        page_size: Annotated[int, QueryParameter(ge=1, le=100, description="Reports per page")] = 20,
    ) -> Page[Report]:
        errors = []
        if report_scope is not None and not SCOPE.fullmatch(report_scope):
            errors.append(FieldError(field="scope", message="expected `platform` or `community:<id>`"))
        if (problem := disorder(since, until, "since", "until")) is not None:
            errors.append(problem)
        if errors:
            raise InvalidInput(errors)
        filters = queries.Filters(kind=kind, scope=report_scope, since=since, until=until)
        count, results = await resources.reads.run(
            lambda conn: queries.page(conn, filters, page_size, (page - 1) * page_size)
        )
        return build_page(request, page, page_size, count, results)

    @get("/{report_id:int}/", summary="One stored report", opt=for_keys("read"))
    async def get_report(
        self, request: Request[Any, Any, Any], report_id: FromPath[int], resources: NamedDependency[Resources]
    ) -> Report:
        return await _load(request, resources, report_id)

    @get(
        "/{report_id:int}/csv/",
        summary="One stored report as a CSV download (a row per figure)",
        media_type="text/csv",
        opt=for_keys("read"),
    )
    async def get_report_csv(
        self, request: Request[Any, Any, Any], report_id: FromPath[int], resources: NamedDependency[Resources]
    ) -> Response[str]:
        report = await _load(request, resources, report_id)
        name = _UNSAFE_IN_FILENAME.sub("-", f"report-{report.id}-{report.kind}-{report.scope}-{report.period_start}")
        return Response(
            to_csv(report.payload),
            media_type="text/csv",  # Litestar adds the charset (utf-8)
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
