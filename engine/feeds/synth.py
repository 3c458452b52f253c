"""A synthetic NSE tick feed: geometric Brownian motion with an intraday volatility shape.

Market time runs over the NSE cash session (09:15–15:30 IST) of consecutive weekdays;
``speed`` market seconds pass per wall-clock second when a caller paces it. Volatility
follows the familiar U shape (high at the open, quiet at lunch, rising into the close).
The same seed gives the same ticks.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
SESSION_OPEN = dt.time(9, 15)
SESSION_SECONDS = 6 * 3600 + 15 * 60  # 09:15 -> 15:30
ANNUAL_VOL = 0.25
TRADING_SECONDS_PER_YEAR = 252 * SESSION_SECONDS


@dataclass(frozen=True, slots=True)
class TickBatch:
    """Ticks in columnar form: symbol index, exchange time (ns since epoch, UTC), price, quantity."""

    inst: np.ndarray
    ts_ns: np.ndarray
    price: np.ndarray
    qty: np.ndarray

    def __len__(self) -> int:
        return len(self.inst)


def session_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, SESSION_OPEN, tzinfo=IST)


def latest_session_day(now: dt.datetime) -> dt.date:
    """The most recent weekday (IST) on or before ``now`` (an aware datetime: the caller's clock)."""
    day = now.astimezone(IST).date()
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


def next_session_day(day: dt.date) -> dt.date:
    day += dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def intraday_vol_factor(seconds_into_session: np.ndarray) -> np.ndarray:
    """U-shaped multiplier of volatility over the session, averaging about 1."""
    x = seconds_into_session / SESSION_SECONDS
    return 0.6 + 4.8 * (x - 0.5) ** 2  # 1.8 at open/close, 0.6 at midday, mean 1.0


class SyntheticFeed:
    """Generates ticks for ``prices`` (symbol index -> start price) in market-time steps.

    Each call to :meth:`advance` moves market time forward by ``market_seconds`` and
    returns, in time order, about ``ticks_per_market_second * market_seconds`` ticks
    spread over the symbols. Prices are rounded to the NSE tick size of 0.05. Market time
    starts at the open of ``start_day`` (the CLI passes :func:`latest_session_day` of its clock).
    """

    def __init__(self, prices: np.ndarray, *, start_day: dt.date, seed: int = 7,
                 ticks_per_market_second: float = 50.0) -> None:
        self._rng = np.random.default_rng(seed)
        self._log_price = np.log(np.asarray(prices, dtype=np.float64))
        self._day = start_day
        self._clock = 0.0  # market seconds into the current session
        self._rate = ticks_per_market_second

    @property
    def market_time(self) -> dt.datetime:
        return session_start(self._day) + dt.timedelta(seconds=self._clock)

    def advance(self, market_seconds: float) -> TickBatch:
        n = int(self._rng.poisson(self._rate * market_seconds))
        offsets = np.sort(self._rng.uniform(self._clock, self._clock + market_seconds, n))
        inst = self._rng.integers(0, len(self._log_price), n)
        offsets = np.minimum(offsets, SESSION_SECONDS - 1e-3)
        ts_ns = (session_start(self._day).timestamp() * 1e9 + offsets * 1e9).astype(np.int64)
        price = self._walk(inst, offsets)
        qty = self._rng.geometric(0.02, n).astype(np.float64)
        self._clock += market_seconds
        if self._clock >= SESSION_SECONDS:
            self._day, self._clock = next_session_day(self._day), 0.0
        return TickBatch(inst.astype(np.int64), ts_ns, price, qty)

    def _walk(self, inst: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        n_sym = len(self._log_price)
        # each tick carries the diffusion of the time since the previous tick of the market, scaled per symbol
        dt_years = (self._rate and 1.0 / self._rate) * n_sym / TRADING_SECONDS_PER_YEAR
        sigma = ANNUAL_VOL * intraday_vol_factor(offsets) * math.sqrt(dt_years)
        steps = self._rng.standard_normal(len(inst)) * sigma - 0.5 * sigma**2
        price = np.empty(len(inst))
        for i, (k, step) in enumerate(zip(inst, steps)):
            self._log_price[k] += step
            price[i] = np.round(np.exp(self._log_price[k]) / 0.05) * 0.05
        return np.round(price, 2)

    def ticks(self, step_seconds: float = 1.0) -> Iterator[TickBatch]:
        while True:
            yield self.advance(step_seconds)
