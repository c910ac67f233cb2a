"""Collects figures and ratios; prints the table, writes JSON and draws the chart."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from .common import Sample, percentile, summary


@dataclass
class Ratio:
    name: str
    system: str
    baseline: str
    values: list[float]
    target: float | None
    higher_is_better: bool = True
    a: dict[str, Any] = field(default_factory=dict)
    b: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def met(self) -> bool | None:
        if self.target is None or not self.values:
            return None
        return self.median >= self.target if self.higher_is_better else self.median <= self.target


class Results:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.figures: list[dict[str, Any]] = []
        self.ratios: list[Ratio] = []
        self.skipped: list[dict[str, str]] = []
        self.checks: list[dict[str, Any]] = []
        self.started = time.time()

    # ------------------------------------------------------------------ recording
    def figure(self, workload: str, system: str, samples: list[Sample], unit: str, **extra: Any) -> dict[str, Any]:
        rates = [s.rate for s in samples]
        fig: dict[str, Any] = {
            "workload": workload,
            "system": system,
            "unit": unit,
            **summary(rates),
            "rounds": rates,
            **extra,
        }
        lats = [x for s in samples for x in s.latencies]
        if lats:
            fig["p50_ms"] = percentile(lats, 50) * 1e3
            fig["p99_ms"] = percentile(lats, 99) * 1e3
        keys = {k for s in samples for k in s.extra}
        for k in sorted(keys):
            vals = [s.extra[k] for s in samples if k in s.extra]
            fig[k] = max(vals) if k.startswith("peak") else statistics.median(vals)
        self.figures.append(fig)
        return fig

    def ratio(
        self,
        name: str,
        a: dict[str, Any],
        b: dict[str, Any],
        target: float | None,
        higher_is_better: bool = True,
        note: str = "",
    ) -> Ratio:
        """Paired per-round ratios a/b (the rounds were interleaved, so round i of a and b ran
        side by side)."""
        ra, rb = a["rounds"], b["rounds"]
        vals = [x / y for x, y in zip(ra, rb, strict=False) if y > 0]
        r = Ratio(name, a["system"], b["system"], vals, target, higher_is_better, a, b, note)
        self.ratios.append(r)
        return r

    def check(self, name: str, text: str, value: float, target: float, higher_is_better: bool = True) -> None:
        """A target on a single figure (no baseline), e.g. peak RSS relative to the payload."""
        met = value >= target if higher_is_better else value <= target
        self.checks.append(
            {
                "name": name,
                "text": text,
                "value": value,
                "target": target,
                "direction": ">=" if higher_is_better else "<=",
                "met": met,
            }
        )

    def skip(self, workload: str, reason: str, baseline: dict[str, Any] | None = None) -> None:
        """A comparison that could not run; ``baseline`` (a figure) is still shown."""
        b = f"{baseline['system']}: {_fmt_fig(baseline)}" if baseline else ""
        self.skipped.append({"workload": workload, "reason": reason, "baseline": b})
        print(f"  skipped {workload}: {reason}", flush=True)

    # ------------------------------------------------------------------ output
    def table(self) -> str:
        head = ("workload", "system", "baseline", "ratio (min-max)", "target", "")
        rows: list[tuple[str, ...]] = []
        for r in self.ratios:
            tgt = "" if r.target is None else (">= " if r.higher_is_better else "<= ") + f"{r.target:g}x"
            status = "" if r.met is None else ("ok" if r.met else "MISS")
            rng = f"{r.median:.2f}x ({min(r.values):.2f}-{max(r.values):.2f})" if r.values else "n/a"
            rows.append((r.name, _fmt_fig(r.a), f"{r.baseline}: {_fmt_fig(r.b)}", rng, tgt, status))
        for c in self.checks:
            rows.append(
                (
                    c["name"],
                    c["text"],
                    "",
                    f"{c['value']:.2f}x",
                    f"{c['direction']} {c['target']:g}x",
                    "ok" if c["met"] else "MISS",
                )
            )
        for s in self.skipped:
            rows.append((s["workload"], "skipped: " + s["reason"], s["baseline"], "", "", ""))
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
        line = "  ".join("-" * w for w in widths)
        out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=False)), line]
        out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) for row in rows]
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        try:
            import psutil

            freq = psutil.cpu_freq()
            cpu = {"count": psutil.cpu_count(), "freq_mhz": freq.current if freq else None}
        except Exception:
            cpu = {"count": os.cpu_count()}
        return {
            "meta": {
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
                "duration_s": round(time.time() - self.started, 1),
                "quick": self.quick,
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpu": cpu,
            },
            "ratios": [
                {
                    "name": r.name,
                    "system": r.system,
                    "baseline": r.baseline,
                    "median": r.median,
                    "min": min(r.values) if r.values else None,
                    "max": max(r.values) if r.values else None,
                    "rounds": r.values,
                    "target": r.target,
                    "direction": ">=" if r.higher_is_better else "<=",
                    "met": r.met,
                    "note": r.note,
                }
                for r in self.ratios
            ],
            "checks": self.checks,
            "figures": self.figures,
            "skipped": self.skipped,
        }

    @classmethod
    def from_json(cls, path: str) -> Results:
        """Results holding the figures of a written ``latest.json`` (to redraw its chart)."""
        with open(path) as f:
            data = json.load(f)
        res = cls(bool(data["meta"]["quick"]))
        res.figures = data["figures"]
        res.started = time.mktime(time.strptime(data["meta"]["date"], "%Y-%m-%dT%H:%M:%SZ"))
        return res

    def write(self, directory: str) -> tuple[str, str | None]:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "latest.json")
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=1, default=_json_default)
            f.write("\n")
        chart = os.path.join(directory, "chart.png")
        try:
            draw_chart(self, chart)
        except ImportError as exc:
            print(f"no chart: {exc}")
            return path, None
        return path, chart


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and math.isnan(o):
        return None
    raise TypeError(type(o).__name__)


def _fmt_num(v: float) -> str:
    if v >= 100_000:
        return f"{v / 1000:.0f}k"
    if v >= 10_000:
        return f"{v / 1000:.1f}k"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def _fmt_ms(ms: float) -> str:
    return f"{ms * 1e3:.0f}us" if ms < 1 else f"{ms:.1f}ms"


def _fmt_fig(f: dict[str, Any]) -> str:
    unit = f["unit"]
    s = f"{_fmt_num(f['median'])} {unit}"
    if "p50_ms" in f and f["unit"] == "calls/s":
        s += f" p50 {_fmt_ms(f['p50_ms'])} p99 {_fmt_ms(f['p99_ms'])}"
    if "peak_rss_client" in f:
        s += f" rss {f['peak_rss_client'] / 2**20:.0f}/{f['peak_rss_server'] / 2**20:.0f}MiB"
    return s


# ---------------------------------------------------------------------------------------------- chart
def draw_chart(res: Results, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = res.figures
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    title = "node-comm benchmark" + (" (quick run)" if res.quick else "")
    fig.suptitle(
        f"{title} - {time.strftime('%Y-%m-%d', time.gmtime(res.started))}, 2-core VM; "
        "medians with min-max over interleaved rounds"
    )

    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors: dict[str, str] = {}

    def color(system: str) -> str:
        if system not in colors:
            colors[system] = palette[len(colors) % len(palette)]
        return colors[system]

    def bars(ax: Any, wanted: list[str], value: str, ylabel: str, log: bool = True) -> None:
        groups = [w for w in wanted if any(f["workload"] == w and value in f for f in figs)]
        if not groups:
            ax.set_visible(False)
            return
        seen: set[str] = set()
        for g, w in enumerate(groups):
            present = [f for f in figs if f["workload"] == w and value in f]
            width = 0.8 / len(present)
            for k, f in enumerate(present):
                x = g - 0.4 + width * (k + 0.5)
                err = None
                if value == "median":
                    err = [[f["median"] - f["min"]], [f["max"] - f["median"]]]
                label = f["system"] if f["system"] not in seen else None
                seen.add(f["system"])
                ax.bar([x], [f[value]], width * 0.95, yerr=err, label=label, color=color(f["system"]), capsize=2)
        ax.set_xticks(range(len(groups)), groups, rotation=10, fontsize=8)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo, hi * 4)  # headroom for the legend
        ax.legend(fontsize=7, ncol=4, loc="upper center")
        ax.grid(axis="y", alpha=0.3)

    small = ["memory.seq", "memory.conc64", "grpc.seq", "grpc.conc64", "peers.seq", "peers.conc64"]
    bars(axes[0][0], small, "median", "calls/s (higher is better)")
    axes[0][0].set_title("small-call throughput")
    bars(axes[0][1], ["memory.seq", "grpc.seq", "peers.seq"], "p50_ms", "p50 latency, ms (lower is better)")
    axes[0][1].set_title("sequential call latency (p50)")
    large = sorted(
        {f["workload"] for f in figs if f["workload"].startswith("large.")},
        key=lambda w: next(f.get("size", 0) for f in figs if f["workload"] == w),
    )
    bars(axes[1][0], large, "median", "MB/s (higher is better)")
    axes[1][0].set_title("large payload echo over gRPC")
    ax = axes[1][1]
    fan = sorted((f for f in figs if f["workload"].startswith("fanout.")), key=lambda f: f["n"])
    if fan:
        ns = [f["n"] for f in fan]
        ms = [f["median"] for f in fan]
        lo = [m - f["min"] for m, f in zip(ms, fan, strict=True)]
        hi = [f["max"] - m for m, f in zip(ms, fan, strict=True)]
        ax.errorbar(ns, ms, yerr=[lo, hi], marker="o", capsize=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("participants")
        ax.set_ylabel("ms per broadcast")
        ax.set_title("fan-out: broadcast time vs participants")
        ax.grid(alpha=0.3)
    else:
        ax.text(0.5, 0.5, "fan-out skipped (grpc transport not available)", ha="center", va="center")
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
