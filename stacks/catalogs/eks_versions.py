"""EKS Kubernetes versions and their support windows.

Source: the Amazon EKS user guide, "Understand the Kubernetes version lifecycle on EKS" (standard support
for 14 months after release, then 12 months of extended support at $0.60 per cluster-hour), with the
per-version dates as tracked on endoflife.date/amazon-eks. 1.36 is offered (Karpenter's v1.14 getting-started
guide uses it) but its release date is not in those sources: its ends assume an EKS release at the end of
June 2026, plus 14 and 26 months.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Literal

# version: (end of standard support, end of extended support)
EKS_VERSIONS: Mapping[str, tuple[date, date]] = {
    "1.30": (date(2025, 7, 23), date(2026, 7, 23)),
    "1.31": (date(2025, 11, 26), date(2026, 11, 26)),
    "1.32": (date(2026, 3, 23), date(2027, 3, 23)),
    "1.33": (date(2026, 7, 29), date(2027, 7, 29)),
    "1.34": (date(2026, 12, 2), date(2027, 12, 2)),
    "1.35": (date(2027, 3, 27), date(2028, 3, 27)),
    "1.36": (date(2027, 8, 31), date(2028, 8, 31)),
}

Support = Literal["standard", "extended", "ended", "unknown"]


def support_status(version: str, today: date) -> Support:
    if version not in EKS_VERSIONS:
        return "unknown"
    standard_end, extended_end = EKS_VERSIONS[version]
    if today < standard_end:
        return "standard"
    if today < extended_end:
        return "extended"
    return "ended"
