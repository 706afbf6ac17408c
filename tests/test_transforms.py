import json
from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from mts import transforms as tf
from mts.validate import apply_rules, market_chart_rules, ohlc_rules

H = 3_600_000
T0 = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp() * 1000)


def hourly(samples):
    """One row per hour, as a merge keeps them: the rows stamped, then sorted and deduplicated."""
    return tf.sort_dedupe(tf.hourly_rows(samples), "market_chart")


def chart(points):
    return {
        "prices": [[t, p] for t, p, _, _ in points],
        "market_caps": [[t, c] for t, _, c, _ in points],
        "total_volumes": [[t, v] for t, _, _, v in points],
    }


def test_jittered_samples_bucket_to_their_hour_and_the_earliest_sample_wins():
    pts = [(T0 + 282_472, 10.0, 100.0, 5.0), (T0 + H + 36_425, 11.0, 110.0, 6.0), (T0 + H + 1_900_000, 12.0, 1.0, 1.0)]
    rows = hourly(tf.market_chart_samples(chart(pts)))
    assert rows["timestamp"].dt.epoch("ms").to_list() == [T0, T0 + H]
    assert rows["price"].to_list() == [10.0, 11.0]
    assert rows["sampled_at"].dt.epoch("ms").to_list() == [T0 + 282_472, T0 + H + 36_425]
    assert rows.schema["timestamp"] == pl.Datetime("ms", "UTC")


def test_five_minute_samples_keep_the_one_closest_to_the_hour_not_the_lowest_price():
    # A window under a day comes back at 5-minute granularity: twelve samples an hour.
    pts = [(T0 + 60_000 + i * 300_000, 20.0 - i, 1.0, 1.0) for i in range(12)]
    rows = hourly(tf.market_chart_samples(chart(pts)))
    assert rows["price"].to_list() == [20.0]
    assert rows["sampled_at"].dt.epoch("ms").to_list() == [T0 + 60_000]
    # and a later merge of the same hour keeps that row, whichever comes first
    later = hourly(tf.market_chart_samples(chart(pts[5:])))
    merged = tf.sort_dedupe(pl.concat([later, rows]), "market_chart")
    assert merged.equals(rows)


def test_winner_does_not_depend_on_order():
    pts = [(T0 + 5_000, 10.0, 1.0, 1.0), (T0 + 1_000, 9.0, 1.0, 1.0), (T0 + H + 1, 3.0, None, 2.0)]
    a = hourly(tf.market_chart_samples(chart(pts)))
    b = hourly(tf.market_chart_samples(chart(list(reversed(pts)))))
    assert a.equals(b)
    assert a["price"].to_list() == [9.0, 3.0]
    assert a["market_cap"].to_list() == [1.0, None]


def test_bad_values_are_rejected_with_the_rule_they_broke():
    pts = [
        (T0 + 1, 10.0, 1.0, 1.0),
        (T0 + H + 1, "12.5", 1.0, 1.0),
        (T0 + 2 * H + 1, None, 1.0, 1.0),
        (T0 + 3 * H + 1, float("nan"), 1.0, 1.0),
        (T0 + 4 * H + 1, 0.0, 1.0, 1.0),
        (T0 + 5 * H + 1, -1.0, 1.0, 1.0),
        (T0 + 6 * H + 1, 5.0, -3.0, 1.0),
        (T0 + 50 * H, 5.0, 1.0, 1.0),
        (T0 + 1, 10.0, 1.0, 1.0),
    ]
    samples = tf.market_chart_samples(chart(pts))
    valid, rejects = apply_rules(samples, market_chart_rules(T0, T0 + 10 * H, T0 + 10 * H))
    assert valid.height == 1
    assert rejects["rule"].to_list() == [
        "numeric_type",
        "price_positive",
        "price_positive",
        "price_positive",
        "price_positive",
        "market_cap_non_negative",
        "inside_window",
        "duplicate_sample",
    ]


def test_answers_validated_together_each_keep_their_own_window():
    """Several answers of one series checked in one pass (as the collector batches them): each
    row against the window it was asked for, duplicates only within one answer."""

    def answer(pts, start, end):
        return tf.market_chart_samples(chart(pts)).with_columns(
            _from=pl.lit(start), _to=pl.lit(end), _now=pl.lit(T0 + 10 * H)
        )

    first = answer([(T0 + 1, 1.0, 1.0, 1.0), (T0 + 5 * H, 2.0, 1.0, 1.0), (T0 + 7 * H, 3.0, 1.0, 1.0)], T0, T0 + 5 * H)
    second = answer(
        [(T0 + 5 * H, 2.0, 1.0, 1.0), (T0 + 6 * H, 4.0, 1.0, 1.0), (T0 + 6 * H, 4.0, 1.0, 1.0)], T0 + 5 * H, T0 + 10 * H
    )
    rules = market_chart_rules(pl.col("_from"), pl.col("_to"), pl.col("_now"), per=["_from", "_to"])
    valid, rejects = apply_rules(pl.concat([first, second]), rules)
    # T0+7H lies inside the second window but came in the first answer; the boundary sample
    # in both answers is no duplicate; the repeated T0+6H inside the second answer is.
    assert rejects.select("sampled_at", "rule").rows() == [
        (T0 + 7 * H, "inside_window"),
        (T0 + 6 * H, "duplicate_sample"),
    ]
    assert valid["sampled_at"].to_list() == [T0 + 1, T0 + 5 * H, T0 + 5 * H, T0 + 6 * H]


def test_ohlc_open_time_forming_candle_and_rules():
    L = 4 * H
    now = T0 + 10 * H + 5
    payload = [
        [T0 + 4 * H, 1.0, 2.0, 0.5, 1.5],
        [T0 + 8 * H, 1.5, 2.5, 1.0, 2.0],
        [T0 + 8 * H, 1.5, 2.5, 1.0, 2.0],
        [T0 + 12 * H, 2.0, 2.2, 1.9, 2.1],  # closes in the future: forming
        [T0 + 5 * H, 1.0, 2.0, 0.5, 1.5],  # off the 4h grid
    ]
    candles = tf.ohlc_candles(payload)
    final, forming = tf.split_forming(candles, now)
    assert forming == 1
    bad = tf.ohlc_candles([[T0 + 4 * H, 1.0, 0.5, 2.0, 1.5]])
    valid, rejects = apply_rules(pl.concat([final, bad]), ohlc_rules(L, T0 - 7 * 24 * H, now))
    assert rejects["rule"].to_list() == ["duplicate_candle", "aligned_to_interval", "high_ge_open_close"]
    rows = tf.candles_to_rows(valid, L)
    assert rows["timestamp"].dt.epoch("ms").to_list() == [T0, T0 + 4 * H]


def test_markets_items_with_hostile_and_broken_entries():
    items = [
        {
            "id": "bitcoin",
            "symbol": "btc",
            "name": "Bitcoin",
            "current_price": 1.0,
            "market_cap": 2.0,
            "market_cap_rank": 1,
            "total_volume": 3.0,
            "last_updated": "2026-11-20T00:04:42.472Z",
        },
        {"id": "x" * 300, "current_price": 1.0, "last_updated": "2026-11-20T00:04:42.472Z"},
        {"id": "eth", "current_price": "oops", "last_updated": "2026-11-20T00:04:42.472Z"},
        "not an object",
    ]
    from mts.validate import markets_rules

    valid, rejects = apply_rules(tf.markets_items(items), markets_rules())
    assert valid["asset_id"].to_list() == ["bitcoin"]
    assert valid["timestamp"].dt.epoch("ms").to_list() == [T0]
    assert rejects["rule"].to_list() == ["asset_id_storable", "numeric_type", "asset_id_storable"]


def test_nan_tokens_and_truncated_bodies():
    assert tf.parse_json(b'{"prices": [[1, NaN]]}')["prices"][0][0] == 1
    import pytest

    with pytest.raises(ValueError):
        tf.parse_json(b'{"prices": [[1, 2.0], [2')


# Entries of a market_chart array as they could come: well-formed pairs, and each way one can
# be broken (a JSON string or object of two items transposes like a pair, so is included).
# (A timestamp with a fraction of a millisecond is the same instant at the stored precision.)
_good = st.builds(
    lambda i, frac, v: [T0 + i * H + frac, v],
    st.integers(0, 1000),
    st.sampled_from([0, 0.5]),
    st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53), st.none()),
)
_bad = st.one_of(
    st.builds(lambda i: [T0 + i * H, "12.5"], st.integers(0, 1000)),
    st.builds(lambda i: [T0 + i * H, True], st.integers(0, 1000)),
    st.builds(lambda i: [T0 + i * H], st.integers(0, 1000)),
    st.builds(lambda i: [T0 + i * H, 1.0, 2.0], st.integers(0, 1000)),
    st.sampled_from(["ab", {"a": 1, "b": 2}, None, [], [[1, 2], [3, 4]]]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _good, _bad), max_size=12))
def test_every_entry_is_kept_typed_or_flagged_whatever_its_shape(entries):
    """Each entry gives one row: its values when it is [int, number], else a type_error (the
    row is then quarantined). The fast transpose and the general path must agree on this."""
    arr = [good if ok else bad for ok, good, bad in entries]
    samples = tf.market_chart_samples({"prices": arr, "market_caps": arr, "total_volumes": arr})
    assert samples.height == len(arr)
    for row, (ok, good, _) in zip(samples.iter_rows(named=True), entries, strict=True):
        if ok:
            assert row["type_error"] is None
            assert (row["sampled_at"], row["price"]) == (int(good[0]), None if good[1] is None else float(good[1]))
        else:
            assert row["type_error"] is not None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _good, _bad), max_size=12), st.sampled_from(["prices", "market_caps", None]))
def test_the_typed_decode_gives_the_general_paths_frame(entries, broken):
    """The client's typed decode of the body takes a shortcut only where the general path over
    the decoded JSON gives the same frame; otherwise it hands that JSON over."""
    clean = [good for _, good, _ in entries]
    mixed = [good if ok else bad for ok, good, bad in entries]
    payload = {k: (mixed if k == broken else clean) for k in ("prices", "market_caps", "total_volumes")}
    body = json.dumps(payload).encode()
    got = tf.decode_market_chart(body)
    want = tf.market_chart_samples(json.loads(body))
    if isinstance(got, pl.DataFrame):
        assert_frame_equal(got, want)
    else:
        assert got == json.loads(body)
        assert any(not ok for ok, _, _ in entries) or not entries or any(isinstance(g[0], float) for g in clean)


@pytest.mark.parametrize("t", [2**63, 2**64 + 5, -(2**63) - 1])
def test_timestamps_beyond_64_bits_take_the_general_path(t):
    """A timestamp no Int64 holds is no typed answer (msgspec would hand it over, and polars
    would saturate it silently or raise): the answer goes down the general path."""
    pairs = [[T0, 1.0], [t, 10**30]]
    body = json.dumps({"prices": pairs, "market_caps": pairs, "total_volumes": pairs}).encode()
    got = tf.decode_market_chart(body)
    assert not isinstance(got, pl.DataFrame)
    assert_frame_equal(tf.market_chart_samples(got), tf.market_chart_samples(tf.parse_json(body)))
