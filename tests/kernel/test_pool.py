"""The warm pool's bookkeeping, with stand-in instances (the real ones are
exercised end to end)."""

from __future__ import annotations

from wasmlambda.kernel import Pool

MB = 1 << 20


class FakeInstance:
    def __init__(self, size: int = MB, dead: bool = False) -> None:
        self.size = size
        self.dead = dead
        self.closed = False

    def memory_size(self) -> int:
        return self.size

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_pool(budget: int = 100 * MB, idle: float = 10, slots: int = 10) -> tuple[Pool, Clock]:
    clock = Clock()
    return Pool(budget, idle, slots, clock), clock


def test_reuses_the_most_recent_instance_of_the_same_version() -> None:
    pool, _ = make_pool()
    first, second = FakeInstance(), FakeInstance()
    assert pool.acquire(("f", "v1")) is None
    assert pool.acquire(("f", "v1")) is None
    pool.release(("f", "v1"), first, keep=True)  # type: ignore[arg-type]
    pool.release(("f", "v1"), second, keep=True)  # type: ignore[arg-type]
    assert pool.acquire(("f", "v2")) is None
    assert pool.acquire(("f", "v1")) is second
    assert pool.busy == 2


def test_dead_or_unkept_instances_are_closed() -> None:
    pool, _ = make_pool()
    dead, fresh = FakeInstance(dead=True), FakeInstance()
    pool.acquire(("f", "v"))
    pool.acquire(("f", "v"))
    pool.release(("f", "v"), dead, keep=True)  # type: ignore[arg-type]
    pool.release(("f", "v"), fresh, keep=False)  # type: ignore[arg-type]
    assert dead.closed and fresh.closed and len(pool) == 0 and pool.busy == 0


def test_memory_budget_evicts_least_recently_used() -> None:
    pool, _ = make_pool(budget=25 * MB)
    instances = [FakeInstance(10 * MB) for _ in range(3)]
    for index, instance in enumerate(instances):
        pool.acquire((f"f{index}", "v"))
        pool.release((f"f{index}", "v"), instance, keep=True)  # type: ignore[arg-type]
    assert [i.closed for i in instances] == [True, False, False]
    assert pool.idle_bytes == 20 * MB and pool.evictions == 1


def test_idle_timeout() -> None:
    pool, clock = make_pool(idle=10)
    old, new = FakeInstance(), FakeInstance()
    pool.acquire(("a", "v"))
    pool.release(("a", "v"), old, keep=True)  # type: ignore[arg-type]
    clock.now = 8
    pool.acquire(("b", "v"))
    pool.release(("b", "v"), new, keep=True)  # type: ignore[arg-type]
    clock.now = 12
    assert pool.evict_idle() == 1
    assert old.closed and not new.closed


def test_slot_limit_makes_room_for_a_cold_start() -> None:
    pool, _ = make_pool(slots=2)
    idle = [FakeInstance(), FakeInstance()]
    for index in range(len(idle)):
        pool.acquire((f"f{index}", "v"))
    for index, instance in enumerate(idle):
        pool.release((f"f{index}", "v"), instance, keep=True)  # type: ignore[arg-type]
    assert pool.acquire(("new", "v")) is None
    assert idle[0].closed and not idle[1].closed


def test_drop_forgets_every_version() -> None:
    pool, _ = make_pool()
    instances = [FakeInstance(), FakeInstance(), FakeInstance()]
    for instance, key in zip(instances, [("f", "1"), ("f", "2"), ("g", "1")], strict=True):
        pool.acquire(key)
        pool.release(key, instance, keep=True)  # type: ignore[arg-type]
    pool.drop("f")
    assert [i.closed for i in instances] == [True, True, False]
    assert len(pool) == 1 and pool.idle_bytes == MB
