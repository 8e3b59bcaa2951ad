"""Budget periods and rate-limit windows as pure functions of the clock.

Counters are keyed by the start of their period or window, so a new period
begins exactly at its boundary without any job resetting anything.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

FIXED_LENGTHS = {"1m": 60, "1h": 3600, "1d": 86400, "1w": 7 * 86400}
MONTHS = {"1M": 1, "1Q": 3, "1Y": 12}


def window_bounds(now: float, window_seconds: int) -> tuple[int, int]:
    """The fixed window (aligned to the epoch) holding ``now``, as epoch seconds."""
    start = int(now // window_seconds) * window_seconds
    return start, start + window_seconds


def _add_months(moment: dt.datetime, months: int) -> dt.datetime:
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month)


# The latest period computed for each (period, alignment, anchor, zone): every
# request inside it gets the same bounds without the calendar arithmetic.
_latest: dict[tuple[str, bool, float, str], tuple[int, int]] = {}


def period_bounds(
    period: str,
    now: float,
    *,
    calendar_aligned: bool = True,
    anchor: float = 0.0,
    timezone: str = "UTC",
) -> tuple[int, int]:
    """The budget period holding ``now`` as epoch seconds ``(start, end)``.

    Calendar periods start at the top of the minute/hour, at midnight, on
    Monday, on the 1st of the month / quarter / year in ``timezone``.
    Rolling periods repeat from ``anchor``. Monthly rolling periods anchored
    on the 29th-31st start on the last day of shorter months.
    """
    rule = (period, calendar_aligned, anchor, timezone)
    latest = _latest.get(rule)
    if latest is not None and latest[0] <= now < latest[1]:
        return latest
    bounds = _period_bounds(period, now, calendar_aligned, anchor, timezone)
    if len(_latest) > 10_000:
        _latest.clear()
    _latest[rule] = bounds
    return bounds


def _period_bounds(
    period: str, now: float, calendar_aligned: bool, anchor: float, timezone: str
) -> tuple[int, int]:
    if period not in FIXED_LENGTHS and period not in MONTHS:
        raise ValueError(f"unknown budget period {period!r}")
    zone = ZoneInfo(timezone)
    moment = dt.datetime.fromtimestamp(now, zone)
    if not calendar_aligned:
        return _rolling_bounds(period, now, anchor, zone)
    if period == "1m":
        start = moment.replace(second=0, microsecond=0)
    elif period == "1h":
        start = moment.replace(minute=0, second=0, microsecond=0)
    elif period in ("1d", "1w"):
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        if period == "1w":
            start -= dt.timedelta(days=start.weekday())
    else:
        first_month = (moment.month - 1) // MONTHS[period] * MONTHS[period] + 1
        start = moment.replace(month=first_month, day=1, hour=0, minute=0, second=0, microsecond=0)
    end = _next_start(period, start)
    # Wall-clock arithmetic in a zone with daylight saving: re-localise.
    start = start.replace(tzinfo=None).replace(tzinfo=zone)
    return int(start.timestamp()), int(end.timestamp())


def _next_start(period: str, start: dt.datetime) -> dt.datetime:
    if period in MONTHS:
        following = _add_months(start, MONTHS[period])
    else:
        days = {"1d": 1, "1w": 7}.get(period)
        following = start + (
            dt.timedelta(days=days) if days else dt.timedelta(seconds=FIXED_LENGTHS[period])
        )
    return following.replace(tzinfo=None).replace(tzinfo=start.tzinfo)


def _rolling_bounds(period: str, now: float, anchor: float, zone: ZoneInfo) -> tuple[int, int]:
    if now < anchor:
        anchor = now
    if period in FIXED_LENGTHS:
        length = FIXED_LENGTHS[period]
        start = anchor + int((now - anchor) // length) * length
        return int(start), int(start + length)
    origin = dt.datetime.fromtimestamp(anchor, zone)
    step = MONTHS[period]
    moment = dt.datetime.fromtimestamp(now, zone)
    months = (moment.year - origin.year) * 12 + moment.month - origin.month
    count = months // step * step
    start = _shift_months(origin, count)
    if start.timestamp() > now:
        count -= step
        start = _shift_months(origin, count)
    end = _shift_months(origin, count + step)
    return int(start.timestamp()), int(end.timestamp())


def _shift_months(origin: dt.datetime, months: int) -> dt.datetime:
    index = origin.month - 1 + months
    year, month = origin.year + index // 12, index % 12 + 1
    last_day = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return origin.replace(year=year, month=month, day=min(origin.day, last_day))
