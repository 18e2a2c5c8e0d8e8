"""talib.<FUNC> as an Indicator, outside the engine: window choice, sharing key, and the
reference runner against TA-Lib on the full history."""

from __future__ import annotations

import math

import numpy as np
import pytest
import talib

from rustybt_api import Indicator
from rustybt_api.errors import IndicatorError
from rustybt_api.talib_function import WHOLE_HISTORY, TalibFunction
from rustybt_api.testing import BarArrays, generate_bars, run_indicator


def bars(rows: int = 800) -> BarArrays:
    return BarArrays.from_bars(list(generate_bars(rows, seed=9)))


def test_window_is_the_lookback_when_exact_settled_when_decaying_and_whole_for_running_sums():
    assert TalibFunction("SMA", timeperiod=30).window == 30
    assert TalibFunction("STOCH").window == 9
    rsi = TalibFunction("RSI", timeperiod=14)
    assert rsi.window is not None and rsi.window > 15 * 10
    for name in WHOLE_HISTORY:
        assert TalibFunction(name).window is None
    # A settle chosen by the user is taken as given, not silently replaced by the whole history.
    assert TalibFunction("RSI", timeperiod=14, settle=100).window == 15 + 100


def test_choices_that_change_values_are_in_the_sharing_key():
    assert repr(TalibFunction("SMA", timeperiod=5)) == "talib.SMA(timeperiod=5)"
    assert repr(TalibFunction("SMA", timeperiod=5, price="open")) != repr(TalibFunction("SMA", timeperiod=5))
    assert "window=50" in repr(TalibFunction("SMA", timeperiod=5, window=50))


@pytest.mark.parametrize("name, params", [("SMA", {"timeperiod": 7}), ("STOCH", {}), ("RSI", {"timeperiod": 5}), ("BBANDS", {})])
def test_engine_mode_equals_talib_over_the_full_history(name, params):
    b = bars()
    indicator = TalibFunction(name, **params)
    got = run_indicator(indicator, b, "engine")
    inputs = {"SMA": [b.close], "RSI": [b.close], "BBANDS": [b.close], "STOCH": [b.high, b.low, b.close]}[name]
    full = getattr(talib, name)(*inputs, **params)
    full = full if isinstance(full, (list, tuple)) else [full]
    for output, expected in zip(indicator.outputs, full):
        np.testing.assert_allclose(got[output], expected, rtol=1e-9, atol=1e-9 * np.nanmax(np.abs(expected)))


def test_bad_names_and_parameters_are_indicator_errors():
    with pytest.raises(IndicatorError, match="TA-Lib has no function `NOPE`"):
        TalibFunction("NOPE")
    with pytest.raises(IndicatorError, match="accepts timeperiod"):
        TalibFunction("RSI", period=3)
    with pytest.raises(IndicatorError, match="must be an integer, got 2.5"):
        TalibFunction("RSI", timeperiod=2.5)
    with pytest.raises(IndicatorError, match="bars do not have"):
        TalibFunction("SMA", price="vwap")


def test_update_may_return_none_for_no_value():
    class Sometimes(Indicator):
        def update(self, bar):
            return None if bar.index % 2 else bar.close

    got = run_indicator(Sometimes(), bars(10), "update")["value"]
    assert math.isnan(got[1]) and got[0] == bars(10).close[0]
