"""`nextbest features ...`: build the feature tables, register the Feast repository, fill the online store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console()

ConfigDir = typer.Option(None, "--config-dir", help="folder with nextbest.yaml (default: configs/ or $NEXTBEST_CONFIG_DIR)")


def _settings(config_dir: Optional[Path]):
    from nextbest.settings import SettingsError, load_settings

    try:
        return load_settings(config_dir)
    except SettingsError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None


def _show(title: str, items: dict) -> None:
    t = Table(title=title, show_header=False, title_justify="left")
    for k, v in items.items():
        t.add_row(str(k), str(v))
    console.print(t)


@app.command()
def build(
    config_dir: Optional[Path] = ConfigDir,
    world_dir: Optional[Path] = typer.Option(None, "--world-dir", help="input data (default: <data_dir>/world)"),
    progress: bool = typer.Option(True, "--progress/--quiet"),
) -> None:
    """Compute the point-in-time feature snapshots from the world and write them as Parquet."""
    from nextbest.contract import ContractError

    from features import pipeline

    s = _settings(config_dir)
    try:
        summary = pipeline.build(s, world_dir=world_dir, progress=progress)
    except ContractError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    except FileNotFoundError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    _show(
        "feature build",
        {
            "customers": f"{summary['customers']:,}",
            "events": f"{summary['events']:,}",
            "snapshots": f"{summary['snapshots']} (every {s.features.cadence_days} days, last at {summary['data_end']})",
            "rows per view": f"{summary['rows']:,}",
            "features": summary["n_features"],
            "written to": summary["features_dir"],
            "seconds": summary["seconds"]["total"],
        },
    )


@app.command()
def apply(config_dir: Optional[Path] = ConfigDir) -> None:
    """Register the feature repository (entity, views, on-demand context, feature service) in Feast."""
    from features import store

    s = _settings(config_dir)
    summary = store.apply(s)
    _show(
        "feast apply",
        {
            "registry": summary["registry"],
            "online store": summary["online_store"],
            "feature service": f"{summary['feature_service']} ({summary['n_features']} features)",
            "feature views": ", ".join(summary["feature_views"]),
            "on-demand views": ", ".join(summary["on_demand_feature_views"]),
        },
    )


@app.command()
def materialize(
    config_dir: Optional[Path] = ConfigDir,
    plain: bool = typer.Option(False, "--plain", help="Feast's standard materialize of the scalar views (slow baseline)"),
    progress: bool = typer.Option(False, "--progress"),
) -> None:
    """Write every customer's latest features to the online store."""
    from features import store

    s = _settings(config_dir)
    try:
        stats = store.materialize(s, progress=progress, plain=plain)
    except (FileNotFoundError, RuntimeError) as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    _show(
        f"materialize ({stats['mode']})",
        {
            "online store": stats["online_store"],
            "customers": f"{stats['customers']:,}",
            "features": stats["n_features"],
            "seconds": stats["seconds"],
            "customers / s": f"{stats['customers_per_second']:,}",
            "real-time customers re-applied": stats["live_refreshed"],
        },
    )
