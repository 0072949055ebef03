"""What bench/soak.py records and how it is shown: samples, the closing table and checks, a CSV and a PNG."""

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass
class Sample:
    t_s: float
    published: int
    bad: int
    stored: int                 # rows newly stored, from the ingest's counter
    dead_lettered: int
    stored_per_s: float
    published_per_s: float
    rss_mib: float | None
    pg_connections: int | None  # None while PostgreSQL restarts
    broker_stored: int | None   # Mosquitto's stored messages ($SYS); None before the first report

    def progress(self) -> str:
        def shown(value: object, spec: str) -> str:
            return "-" if value is None else format(value, spec)

        return (f"soak: {self.t_s:6.0f} s  published {self.published:>10,}  stored {self.stored:>10,} "
                f"({self.stored_per_s:>6,.0f}/s)  dead {self.dead_lettered:>7,}  rss {shown(self.rss_mib, '.0f')} MiB"
                f"  pg conns {shown(self.pg_connections, 'd')}  broker queue {shown(self.broker_stored, ',')}")


def write_csv(samples: list[Sample], path: Path) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, [f.name for f in fields(Sample)])
        writer.writeheader()
        for sample in samples:
            writer.writerow({k: ("" if v is None else round(v, 2) if isinstance(v, float) else v)
                             for k, v in asdict(sample).items()})
    return path


def write_plot(samples: list[Sample], summary: dict, path: Path) -> Path:
    try:
        import matplotlib
    except ImportError as exc:
        raise SystemExit("bench.soak: the plot needs matplotlib: .venv/bin/pip install -e '.[bench]'") from exc
    matplotlib.use("Agg")
    from matplotlib import pyplot

    minutes = [s.t_s / 60 for s in samples]
    figure, axes = pyplot.subplots(4, 1, sharex=True, figsize=(10, 10))
    panels = [("ingest RSS (MiB)", [s.rss_mib for s in samples]),
              ("PostgreSQL connections", [s.pg_connections for s in samples]),
              ("Mosquitto stored messages", [s.broker_stored for s in samples]),
              ("heartbeats per s", [s.stored_per_s for s in samples])]
    for axis, (label, values) in zip(axes, panels, strict=True):
        axis.plot(minutes, [float("nan") if v is None else v for v in values], linewidth=1,
                  label="stored" if axis is axes[-1] else None)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        if summary["restart"]:
            down, up = (t / 60 for t in summary["restart"])
            # At least 0.5 % of the x axis wide, so that a one-second restart still shows on a 30-minute plot.
            axis.axvspan(down, max(up, down + minutes[-1] / 200), color="tab:red", alpha=0.25,
                         label="PostgreSQL restart" if axis is axes[0] else None)
        axis.axvline(summary["ended"] / 60, color="black", linestyle=":", linewidth=1,
                     label="publishing ended" if axis is axes[0] else None)
    axes[-1].plot(minutes, [s.published_per_s for s in samples], linewidth=1, color="tab:green", alpha=0.7,
                  label="published")
    axes[0].legend(loc="lower right")
    axes[-1].legend(loc="lower right")
    axes[-1].set_xlabel("minutes")
    figure.suptitle(f"citykpi ingest soak: {summary['minutes']:g} min at {summary['rate']:,.0f} heartbeats/s "
                    f"({summary['bad']:,} bad, {summary['duplicates']:,} duplicates), PostgreSQL restarted once")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def print_summary(samples: list[Sample], summary: dict) -> bool:
    """The closing table and the two checks; True when both hold."""
    stored_ok = summary["stored"] == summary["expected_stored"]
    dead_ok = summary["dead_lettered"] >= summary["bad"]
    rss = [s.rss_mib for s in samples if s.rss_mib is not None]
    connections = [s.pg_connections for s in samples if s.pg_connections is not None]
    restart = summary["restart"]
    print(f"\nsoak: {summary['minutes']:g} min at {summary['rate']:,.0f}/s asked, {summary['achieved_rate']:,.0f}/s "
          f"published; {summary['cpus']} CPUs; PostgreSQL from {summary['postgres']}; {summary['broker']}")
    if summary["achieved_rate"] < 0.9 * summary["rate"]:
        print("note: the load generator fell behind the asked rate (a busy machine, or a broker slower than asked)")
    if restart:
        print(f"PostgreSQL stopped at {restart[0]:.0f} s and accepted connections again at {restart[1]:.0f} s")
    print("\n| what | value |\n|---|---:|")
    rows = [("published", summary["published"]), ("good (incl. duplicates)", summary["good"]),
            ("duplicates re-sent", summary["duplicates"]), ("bad", summary["bad"]),
            ("stored", summary["stored"]), ("expected stored (good − duplicates)", summary["expected_stored"]),
            ("dead letters", summary["dead_lettered"])]
    for what, value in rows:
        print(f"| {what} | {value:,} |")
    print(f"| ingest RSS first / last / peak sample (MiB) | {rss[0]:.0f} / {rss[-1]:.0f} / {max(rss):.0f} |"
          if rss else "| ingest RSS | - |")
    print(f"| ingest peak RSS, VmHWM (MiB) | {summary['peak_rss_mib']:.0f} |")
    print(f"| PostgreSQL connections min / max | {min(connections)} / {max(connections)} |"
          if connections else "| PostgreSQL connections | - |")
    print(f"\ncheck stored == good − duplicates: {'ok' if stored_ok else 'FAILED'} "
          f"({summary['stored']:,} vs {summary['expected_stored']:,})")
    print(f"check dead letters ≥ bad: {'ok' if dead_ok else 'FAILED'} "
          f"({summary['dead_lettered']:,} vs {summary['bad']:,})")
    return stored_ok and dead_ok
