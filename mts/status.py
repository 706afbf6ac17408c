"""`mts status`: coverage and freshness per dataset, interval and asset, and the last run."""

from __future__ import annotations

from datetime import datetime

from .inventory import markets_info, saved_last_run, scan
from .layout import Layout
from .settings import Settings


def build_status(settings: Settings, now: datetime) -> dict:
    layout = Layout(settings.data_dir, settings.fmt)
    series = scan(layout)
    last_run = saved_last_run(layout)  # as saved: a status reads, it does not reconcile
    return {
        "data_dir": str(settings.data_dir),
        "checked_at": now.isoformat(),
        "series": [s.as_dict(now) for s in series],
        "markets": markets_info(layout),
        "last_run": last_run,
    }


def render_status(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not report["series"] and not report["markets"]["rows"]:
        console.print(f"No data in {report['data_dir']} yet: run `mts collect`.")
    else:
        table = Table(title=f"mts data in {report['data_dir']}")
        for col in ("dataset", "interval", "asset", "first", "last", "rows", "missing", "age h", "fresh"):
            table.add_column(col, justify="right" if col in ("rows", "missing", "age h") else "left")
        for s in report["series"]:
            table.add_row(
                s["dataset"],
                s["interval"],
                s["asset_id"],
                (s["first"] or "")[:16],
                (s["last"] or "")[:16],
                f"{s['rows']:,}",
                str(s["missing"]),
                f"{s['age_hours']:.1f}" if s["age_hours"] is not None else "",
                "yes" if s["fresh"] else "[red]no[/red]",
            )
        console.print(table)
        m = report["markets"]
        console.print(f"markets: {m['rows']:,} rows in {m['snapshots']} snapshots, last {m['last']}")
    run = report["last_run"]
    if run:
        console.print(
            f"last run: {run['outcome']} (exit {run['exit_code']}) at {run['finished_at']}: "
            f"{run['assets_succeeded']}/{run['assets_attempted']} assets, {run['rows_stored']:,} rows, "
            f"{run['calls']} calls"
        )
    else:
        console.print("last run: none recorded")
