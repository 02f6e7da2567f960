"""The vision benchmark's figures: per-clip results summed in total and per condition tag, and
a short table for people (the JSON is for machines)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

_KINDS = ("intrusion", "loitering", "crowd", "object_left", "tamper_covered", "tamper_blurred",
          "tamper_moved")  # fmt: skip


def _new() -> dict[str, Any]:
    return {"clips": 0, "frames": 0, "cpu_s": 0.0, "seconds": 0.0,
            "per": defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0, "delays": []}),
            "crossings": 0, "count_error": 0, "count_net": 0,
            "free_s": 0.0, "free_alerts": 0,
            "confusion": defaultdict(int)}  # fmt: skip


def _add(acc: dict[str, Any], clip: dict[str, Any]) -> None:
    acc["clips"] += 1
    acc["frames"] += clip["frames"]
    acc["cpu_s"] += clip["cpu_s"]
    acc["seconds"] += clip["duration_s"]
    for kind, s in clip["per"].items():
        for k in ("tp", "fp", "fn"):
            acc["per"][kind][k] += s[k]
        acc["per"][kind]["delays"] += s["delays"]
    for c in clip["counts"]:
        truth, got = c["truth"], c["got"]
        acc["crossings"] += truth["in"] + truth["out"]
        acc["count_error"] += abs(got["in"] - truth["in"]) + abs(got["out"] - truth["out"])
        acc["count_net"] += got["in"] + got["out"] - truth["in"] - truth["out"]
    if clip["event_free"]:
        acc["free_s"] += clip["duration_s"]
        acc["free_alerts"] += clip["alerts"]
    for k, v in clip["confusion"].items():
        acc["confusion"][k] += v


def _figures(acc: dict[str, Any]) -> dict[str, Any]:
    alerts: dict[str, Any] = {}
    for kind, s in sorted(acc["per"].items()):
        tp, fp, fn = s["tp"], s["fp"], s["fn"]
        delays = sorted(s["delays"])
        alerts[kind] = {
            "events": tp + fn, "tp": tp, "fp": fp, "fn": fn,
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / (tp + fn), 3) if tp + fn else None,
            "delay_s_median": round(delays[len(delays) // 2], 2) if delays else None,
            "delay_s_max": round(delays[-1], 2) if delays else None,
        }  # fmt: skip
    out: dict[str, Any] = {"clips": acc["clips"], "frames": acc["frames"],
                           "hours": round(acc["seconds"] / 3600, 3), "alerts": alerts}  # fmt: skip
    if acc["crossings"]:
        out["counting"] = {"crossings": acc["crossings"],
                           "error_pct": round(100 * acc["count_error"] / acc["crossings"], 1),
                           "net_pct": round(100 * acc["count_net"] / acc["crossings"], 1)}  # fmt: skip
    if acc["free_s"]:
        out["event_free"] = {"hours": round(acc["free_s"] / 3600, 3), "alerts": acc["free_alerts"],
                             "per_hour": round(acc["free_alerts"] * 3600 / acc["free_s"], 2)}  # fmt: skip
    c = acc["confusion"]
    if any(c.get(f"{kind}_{n}") for kind in ("animal", "vehicle") for n in ("visits", "alerts")):
        out["confusion"] = dict(c)
        if c.get("animal_visits"):
            out["confusion"]["animal_alert_share"] = round(
                c["animal_alerts"] / c["animal_visits"], 3
            )
    out["fps_per_core"] = round(acc["frames"] / acc["cpu_s"], 1) if acc["cpu_s"] else None
    return out


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures in total and per tag, and each clip's own in brief."""
    total = _new()
    tags: dict[str, dict[str, Any]] = defaultdict(_new)
    for clip in results:
        _add(total, clip)
        for tag in clip["tags"]:
            _add(tags[tag], clip)
    brief = []
    for clip in results:
        b: dict[str, Any] = {"name": clip["name"], "tags": clip["tags"]}
        b.update({k: f"{s['tp']}/{s['fp']}/{s['fn']}" for k, s in sorted(clip["per"].items())})
        for c in clip["counts"]:
            b[f"count {c['line']}"] = (f"{c['got']['in']}+{c['got']['out']} of "
                                       f"{c['truth']['in']}+{c['truth']['out']}")  # fmt: skip
        if clip["false"]:
            b["false"] = clip["false"][:8]
        brief.append(b)
    return {"total": _figures(total), "per_tag": {t: _figures(a) for t, a in sorted(tags.items())},
            "per_clip": brief}  # fmt: skip


def _pr(fig: dict[str, Any], kind: str) -> str:
    a = fig["alerts"].get(kind)
    if a is None:
        return "-"
    p = "-" if a["precision"] is None else f"{a['precision']:.2f}"
    r = "-" if a["recall"] is None else f"{a['recall']:.2f}"
    return f"{p}/{r}"


def table(out: dict[str, Any]) -> str:
    """Precision/recall per kind (P/R), counting error, false alerts per hour, animal and vehicle
    alerts (of their visits alone in a zone), one row per tag and a total row; speed below."""
    heads = ["tag", "clips", *[k.replace("tamper_", "t_") for k in _KINDS], "count%", "free/h",
             "animal", "vehicle"]  # fmt: skip
    rows = [heads]
    for name, fig in [*out["per_tag"].items(), ("TOTAL", out["total"])]:
        c = fig.get("confusion", {})
        rows.append([name, str(fig["clips"]), *[_pr(fig, k) for k in _KINDS],
                     str(fig["counting"]["error_pct"]) if "counting" in fig else "-",
                     str(fig["event_free"]["per_hour"]) if "event_free" in fig else "-",
                     f"{c.get('animal_alerts', 0)}/{c.get('animal_visits', 0)}" if c else "-",
                     f"{c.get('vehicle_alerts', 0)}/{c.get('vehicle_visits', 0)}" if c else "-"])  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)) for r in rows]
    sp = out.get("speed", {})
    for size in ("640x360", "1280x720"):
        if size in sp:
            s = sp[size]
            lines.append(f"speed {size}: bare {s['bare_fps']} fps, analysis {s['analysis_fps']} "
                         f"fps, ratio {s['ratio']}")  # fmt: skip
    return "\n".join(lines)
