"""The rich tables the commands print without ``--json``: each ``render_*`` draws the summary
dict of its command (``pcm_hil.cli.commands``) on a console."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

YEAR_S = 365 * 86400.0


def duration(seconds: float) -> str:
    """A time after programming, as the table headings show it: ``1 y``, ``1 mo``, ``3 h``…"""
    for unit, size in (("y", YEAR_S), ("mo", 30 * 86400.0), ("d", 86400.0), ("h", 3600.0)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def render_program(summary: dict, console: Console) -> None:
    """Per level: the error of the final read (read ``settle`` after the last pulse), split
    into the programmed spread and the read noise, beside the published σ_prog."""
    settle = summary.get("settle_s")
    table = Table(
        title=f"Program-and-verify ({summary['strategy']}, tolerance ≤ {summary['tolerance_uS']}"
        " µS" + (f", verify {settle:g} s after each pulse)" if settle is not None else ")")
    )
    for column in (
        "target µS",
        "conv.",
        "stuck",
        "bias",
        "err σ",
        "read σ",
        "spread",
        "σ_prog",
        "ratio",
    ):
        table.add_column(column, justify="right")
    for level in summary["levels"]:
        spread = level.get("programmed_spread_uS", float("nan"))
        table.add_row(
            f"{level['target_uS']:.2f}",
            f"{level['converged_fraction']:.1%}",
            str(level["stuck"]),
            f"{level.get('error_mean_uS', float('nan')):+.2f}",
            f"{level['error_std_uS']:.3f}",
            f"{level.get('read_noise_uS', float('nan')):.3f}",
            f"{spread:.3f}",
            f"{level['published_sigma_uS']:.3f}",
            f"{spread / level['published_sigma_uS']:.2f}",
        )
    table.caption = (
        "µS; bias, err σ: of the final read − target; spread: the conductances' own, √(err σ² − "
        "read σ²); σ_prog: the published σ; ratio: spread / σ_prog"
    )
    console.print(table)
    console.print(
        f"{summary['devices']} devices, {summary['converged_fraction']:.2%} converged, "
        f"{summary['stuck_devices']} stuck; iterations mean {summary['iterations_mean']:.1f}, "
        f"p99 {summary['iterations_p99']:.0f}; error std {summary['error_std_uS']:.3f} µS "
        f"(programmed spread {summary.get('programmed_spread_uS', float('nan')):.3f}, read noise "
        f"{summary.get('read_noise_uS', float('nan')):.3f}); {summary['elapsed_s']:.2f} s "
        f"({summary['status']})"
    )


def render_drift(summary: dict, console: Console) -> None:
    table = Table(title=f"Drift exponent per level (fit from {summary['fit_from_s']:g} s)")
    for column in ("target µS", "ν mean", "ν std", "devices", "good fits"):
        table.add_column(column, justify="right")
    for level in summary["levels"]:
        table.add_row(
            f"{level['target_uS']:.2f}",
            f"{level['nu_mean']:.4f}",
            f"{level['nu_std']:.4f}",
            str(level["n_devices"]),
            f"{level['good_fit_fraction']:.1%}",
        )
    console.print(table)
    console.print(
        f"{summary['devices']} devices, {summary['read_times']} read times, "
        f"{summary['elapsed_s']:.2f} s ({summary['status']})"
    )


def render_curve(summary: dict, console: Console) -> None:
    """Any ``characterize`` curve: one row per point, one column per quantity."""
    points = summary["points"]
    table = Table(
        title=f"{summary['kind']} ({summary.get('devices', '')} devices, {summary['status']})"
    )
    for column in points[0] if points else ():
        table.add_column(column.replace("_uS", " µS").replace("_uA", " µA"), justify="right")
    for point in points:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in point.values()))
    console.print(table)


def render_infer(summary: dict, console: Console) -> None:
    table = Table(
        title=f"{summary.get('network') or summary.get('model')}: test accuracy vs time after programming "
        f"(software {summary['fp_accuracy']:.2%}; mean ± std over {summary['chips']} chips)"
    )
    times = sorted({p["t_s"] for p in summary["points"]})
    table.add_column("weights")
    table.add_column("compensation")
    for t in times:
        table.add_column(duration(t), justify="right")
    rows: dict[tuple[str, str], dict[float, dict]] = {}
    for point in summary["points"]:
        rows.setdefault((point["weights"], point["compensation"]), {})[point["t_s"]] = point
    for (weights, compensation), by_time in sorted(rows.items()):
        cells = [
            f"{by_time[t]['accuracy_mean']:.2%} ±{by_time[t]['accuracy_std']:.1%}"
            if t in by_time
            else ""
            for t in times
        ]
        table.add_row(weights, compensation, *cells)
    console.print(table)
    console.print(f"{summary['elapsed_s']:.1f} s ({summary['status']})")


def render_demo(summary: dict, console: Console) -> None:
    """The program, drift and inference tables of the demo, then its one-paragraph verdict."""
    render_program(summary["program"], console)
    render_drift(summary["drift"], console)
    infer = summary["infer"]
    render_infer(
        {
            "network": summary["network"],
            "fp_accuracy": infer["fp_accuracy"],
            "chips": infer["points"][0]["chips"] if infer["points"] else 0,
            "points": infer["points"],
            "elapsed_s": summary["elapsed_s"],
            "status": summary["status"],
        },
        console,
    )
    program = summary["program"]
    year = [p for p in infer["points"] if p["t_s"] >= YEAR_S and p["weights"] == "noise-aware"]
    best = max(year, key=lambda p: p["accuracy_mean"]) if year else None
    nus = [level["nu_mean"] for level in summary["drift"]["levels"]]
    console.print(
        f"[bold]Demo:[/] {program['devices']:,} devices programmed to 16 levels "
        f"({program['converged_fraction']:.1%} converged, "
        f"error std {program['error_std_uS']:.2f} µS); "
        f"drift ν {min(nus):.3f}…{max(nus):.3f} over a virtual year"
        + (
            f"; digits {summary['network']} after a year: {best['accuracy_mean']:.1%} "
            f"(noise-aware, {best['compensation']}) vs {infer['fp_accuracy']:.1%} in software"
            if best
            else ""
        )
        + f"; {summary['elapsed_s']:.0f} s."
    )


def render_train(summary: dict, console: Console) -> None:
    table = Table(
        title="Mixed-precision training with the weights on the chip (digits)", show_header=False
    )
    for key in (
        "fp_accuracy",
        "chip_accuracy",
        "epochs",
        "pulses_applied",
        "refreshed_pairs",
        "elapsed_s",
    ):
        if key in summary:
            value = summary[key]
            table.add_row(
                key,
                f"{value:.2%}"
                if key.endswith("accuracy")
                else f"{value:,.4g}"
                if isinstance(value, float)
                else f"{value:,}",
            )
    console.print(table)


def render_info(info: dict, console: Console, title: str) -> None:
    """The chip's identity and configuration, one row each, under ``title`` (its resource)."""
    table = Table(title=title, show_header=False)
    rows = dict(info)
    identity = rows.pop("identity")
    table.add_row("identity", ", ".join(identity.values()))
    for key, value in rows.items():
        table.add_row(key, str(value))
    console.print(table)


def render_tour(summary: dict, console: Console) -> None:
    identity = summary["identity"]
    console.print(
        f"[bold]{identity['manufacturer']} {identity['model']}[/] serial {identity['serial']}, "
        f"firmware {identity['firmware']} on [cyan]{summary['resource']}[/]"
    )
    programmed = Table(title=f"Melt-quench programming, tile {summary['tile']}")
    for column in ("current µA", "devices", "read-back mean µS", "std µS"):
        programmed.add_column(column, justify="right")
    for level in summary["levels"]:
        programmed.add_row(
            f"{level['current_uA']:.0f}",
            str(level["devices"]),
            f"{level['read_back_mean_uS']:.2f}",
            f"{level['read_back_std_uS']:.2f}",
        )
    console.print(programmed)
    drift = Table(title="Drift: mean conductance µS after programming (virtual time)")
    drift.add_column("current µA", justify="right")
    for t in summary["times_s"]:
        drift.add_column(duration(t), justify="right")
    drift.add_column("fitted ν", justify="right")
    for level in summary["levels"]:
        drift.add_row(
            f"{level['current_uA']:.0f}",
            *(f"{g:.2f}" for g in level["drift_mean_uS"]),
            f"{level['nu_fit']:.3f}",
        )
    console.print(drift)


#: The tables each recorded procedure prints of its summary (``runs show`` prints them again).
RENDERERS = {
    "program": render_program,
    "drift": render_drift,
    "programming-curve": render_curve,
    "accumulation": render_curve,
    "read-noise": render_curve,
    "infer": render_infer,
    "demo": render_demo,
    "train": render_train,
}
