"""A dashboard's time range and the interval Grafana 11.6 derives from it.

Grafana computes the interval in the browser, in milliseconds: @grafana/scenes'
SceneQueryRunner.prepareRequests calls @grafana/data's `rangeUtil.calculateInterval(range,
maxDataPoints)`, which rounds `(to - from) / maxDataPoints` (both in ms) to a ladder of "nice"
intervals (`roundInterval`) and names it with `secondsToHms` ("10s", "1m", "500ms"). The request
carries `intervalMs`; the ClickHouse plugin's backend turns it into `$__interval_s` as
`int(max(intervalMs / 1000, 1))` (pkg/macros/macros.go, IntervalSeconds)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

# rangeUtil.roundInterval (@grafana/data 11.6, datetime/rangeutil): below each bound (ms) the
# interval becomes the value beside it.
_NICE_INTERVALS_MS = (
    (10, 1),
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)
_LONGEST_INTERVAL_MS = 31_536_000_000


def round_interval(interval_ms: float) -> int:
    for bound, nice in _NICE_INTERVALS_MS:
        if interval_ms < bound:
            return nice
    return _LONGEST_INTERVAL_MS


def seconds_to_hms(seconds: float) -> str:
    """rangeUtil.secondsToHms: the largest whole unit only (90 s is "1m")."""
    within_year = seconds % 31_536_000
    units = (
        (seconds // 31_536_000, "y"),
        (within_year // 86_400, "d"),
        (within_year % 86_400 // 3_600, "h"),
        (within_year % 86_400 % 3_600 // 60, "m"),
        (within_year % 86_400 % 3_600 % 60 // 1, "s"),
    )
    for count, suffix in units:
        if count:
            return f"{int(count)}{suffix}"
    milliseconds = int(seconds * 1000)
    return f"{milliseconds}ms" if milliseconds else "less than a millisecond"


def to_epoch_ms(moment: datetime) -> int:
    """A JavaScript Date's valueOf(): whole milliseconds since the epoch."""
    return (moment - _EPOCH) // _MS


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    # Every panel fixes maxDataPoints (panel_model.MAX_DATA_POINTS), so the interval depends on
    # the range only, not on the panel's width in pixels.
    max_data_points: int = 300

    @property
    def from_ms(self) -> int:
        return to_epoch_ms(self.start)

    @property
    def to_ms(self) -> int:
        return to_epoch_ms(self.end)

    @property
    def from_s(self) -> int:
        """Go's time.Unix(): whole seconds, rounded down (macros.go timeToDateTime)."""
        return self.from_ms // 1000

    @property
    def to_s(self) -> int:
        return self.to_ms // 1000

    @property
    def interval_ms(self) -> int:
        return round_interval((self.to_ms - self.from_ms) / self.max_data_points)

    @property
    def interval_text(self) -> str:
        """What `$__interval` becomes in the browser."""
        return seconds_to_hms(self.interval_ms / 1000)

    @property
    def interval_s(self) -> int:
        """What `$__interval_s` becomes in the plugin: whole seconds, at least one."""
        return int(max(self.interval_ms / 1000, 1))
