"""`archlab doctor`: which sandbox level this machine gives candidate code, and for each
stronger level, every piece that is missing."""

from __future__ import annotations

from typing import Any

from archlab.sandbox.basic import die_with_orchestrator_prefix, network_isolation_prefix
from archlab.sandbox.cgroups import CgroupUnavailable, hierarchy
from archlab.sandbox.levels import LEVELS
from archlab.sandbox.strict import strict_missing

#: what it takes to get the strict level, for a machine that lacks a piece of it
STRICT_HOW = (
    "run archlab as root with bubblewrap and setpriv installed (`apt-get install bubblewrap "
    "util-linux`, or `dnf install bubblewrap util-linux`); more in docs/sandbox.md, "
    "section Sandbox levels"
)


def diagnose(required_level: str) -> dict[str, Any]:
    """The report `archlab doctor --json` prints; `ok` is False when the configured
    minimum level (`sandbox.level`) cannot be had here."""
    missing = {"strict": list(strict_missing()), "basic": []}
    level = max((lv for lv in LEVELS if not missing[lv]), key=LEVELS.index)
    try:
        cgroups: str | None = hierarchy().describe()
    except CgroupUnavailable:
        cgroups = None
    return {
        "sandbox_level": level,
        "required_level": required_level,
        "ok": LEVELS.index(level) >= LEVELS.index(required_level),
        "levels": {lv: {"available": not missing[lv], "missing": missing[lv]} for lv in LEVELS},
        "strict_how": STRICT_HOW if missing["strict"] else None,
        "cgroups": cgroups,
        "basic_network_isolation": " ".join(network_isolation_prefix()) or None,
        "basic_dies_with_orchestrator": " ".join(die_with_orchestrator_prefix()) or None,
    }


def render(report: dict[str, Any]) -> str:
    lines = [f"sandbox level: {report['sandbox_level']}"]
    for level in reversed(LEVELS):
        info = report["levels"][level]
        lines.append(f"  {level}: {'available' if info['available'] else 'unavailable'}")
        lines += [f"    - {piece}" for piece in info["missing"]]
        if level == "strict" and report["strict_how"]:
            lines.append(f"    to get it: {report['strict_how']}")
    lines.append(f"  cgroups: {report['cgroups'] or 'none usable'}")
    lines.append(
        "  basic's network isolation: "
        + (report["basic_network_isolation"] or "none (unshare --net is not permitted here)")
    )
    lines.append(
        "  basic's trials die with their orchestrator: "
        + (
            report["basic_dies_with_orchestrator"]
            or "no (no setpriv with --pdeathsig): a killed run leaves its trial running, unwatched"
        )
    )
    verdict = "met" if report["ok"] else "NOT met: runs will refuse to start"
    lines.append(f"required minimum (sandbox.level): {report['required_level']}, {verdict}")
    return "\n".join(lines)
