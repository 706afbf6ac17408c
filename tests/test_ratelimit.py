import threading

from mts.ratelimit import RateLimiter


class FakeTime:
    def __init__(self):
        self.t = 0.0
        self.lock = threading.Lock()

    def clock(self):
        return self.t

    def sleep(self, s):
        with self.lock:
            self.t += s


def test_calls_are_spaced_evenly_below_the_limit():
    ft = FakeTime()
    rl = RateLimiter(60, clock=ft.clock, sleep=ft.sleep)
    starts = []
    for _ in range(10):
        rl.acquire()
        starts.append(ft.t)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(abs(g - 60 / (60 * RateLimiter.HEADROOM)) < 1e-9 for g in gaps)
    # never more than the limit in any 60 s window
    assert sum(1 for s in starts if s < 60) <= 60


def test_a_429_pauses_everyone_then_one_probe_goes_first_at_a_lower_rate():
    ft = FakeTime()
    rl = RateLimiter(600, clock=ft.clock, sleep=ft.sleep)
    rl.acquire()
    before = rl.rate_per_min
    pause = rl.rate_limited(retry_after=5)
    assert pause == 5 and rl.rate_per_min < before
    assert rl.acquire() is True  # the probe
    assert ft.t >= 5
    waiter_done = threading.Event()

    def other():
        rl.acquire()
        waiter_done.set()

    th = threading.Thread(target=other)
    th.start()
    assert not waiter_done.wait(0.3), "others wait while the probe is out"
    rl.succeeded()
    assert waiter_done.wait(2)
    th.join()


def test_a_slot_granted_before_a_429_is_not_used_during_the_pause():
    ft = FakeTime()
    fired = []

    def sleep(s):
        if not fired:  # another worker's call gets a 429 while this one waits for its slot
            fired.append(rl.rate_limited(retry_after=30))
        ft.sleep(s)

    rl = RateLimiter(60, clock=ft.clock, sleep=sleep)
    rl.acquire()  # the first slot is immediate
    assert rl.acquire() is True  # its slot was voided; it went again after the pause, as the probe
    assert ft.t >= 30


def test_retry_after_parsing():
    from datetime import UTC, datetime

    from mts.client import retry_after_seconds

    now = datetime(2025, 7, 25, 14, 53, 30, tzinfo=UTC)
    assert retry_after_seconds({"Retry-After": "119"}, now) == 119
    assert retry_after_seconds({"x-ratelimit-reset": "2025-07-25 14:54:00 +0000"}, now) == 30
    assert retry_after_seconds({"Retry-After": "Fri, 25 Jul 2025 14:54:00 GMT"}, now) == 30
    assert retry_after_seconds({}, now) is None
