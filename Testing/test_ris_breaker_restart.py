"""The RIS database's breaker against a real MariaDB restarted mid-test (issue 16).

Before, a breaker opened by a 1.2 s restart kept the RIS failing with CIRCUIT_OPEN for its whole
30 s cool-down. Now the breaker looks at MariaDB's port while open: the restarted server is called
again at once, whatever the cool-down. A server that stays down still costs no connection attempt
between probes (CIRCUIT_OPEN at once), and the probes space out (first_cooldown_s, doubled each
time). Workers keep querying through the store during the restarts, as the MWL SCP and the REST
API do, and N restarts leave no growing state (connections, pool entries, exceptions).
"""

from __future__ import annotations

import gc
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fixtures.mariadb import MariaDb, restart_mariadb, start_mariadb, stop_mariadb
from SlicerMCPLib.core.config import load_config
from SlicerMCPLib.core.errors import SlicerMCPError
from SlicerMCPLib.ris.service import RisService


@pytest.fixture
def own_mariadb(tmp_path: Path) -> Iterator[list[MariaDb]]:
    """A MariaDB of this test's own (restarting the session's would disturb other tests)."""
    servers = [start_mariadb(tmp_path)]
    yield servers
    stop_mariadb(servers[-1])


def _service(server: MariaDb, **breaker: Any) -> RisService:
    block = server.create_database()
    config = load_config(env={}, overrides={"mini_ris": block, "breaker": breaker})
    service = RisService(config)
    service.store.list_patients()  # opened, migrated, seeded while the server runs
    return service


class Load:
    """Threads querying the store until stopped, counting outcomes by code."""

    def __init__(self, service: RisService, threads: int = 4):
        self.service, self.codes, self._stop = service, Counter[str](), threading.Event()
        self.retry_at: set[str] = set()  # what CIRCUIT_OPEN announced
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.service.store.list_patients()
                self.codes["OK"] += 1
            except SlicerMCPError as exc:
                self.codes[str(exc.code)] += 1
                if "retry_at" in exc.details:
                    self.retry_at.add(exc.details["retry_at"])
            time.sleep(0.005)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def _code(service: RisService) -> str:
    try:
        service.store.list_patients()
    except SlicerMCPError as exc:
        return str(exc.code)
    return "OK"


def test_the_ris_is_back_as_soon_as_mariadb_is_back(own_mariadb: list[MariaDb]) -> None:
    """A 60 s cool-down, and still the first call after the restart (or the one after it, if a
    look at the port was just made) goes through: the look saw the port closed, then open."""
    service = _service(own_mariadb[0], first_cooldown_s=60, cooldown_s=60, ris_database_cooldown_s=60)
    (breaker,) = service.breakers()
    with Load(service) as load:
        time.sleep(0.3)
        own_mariadb.append(restart_mariadb(own_mariadb[-1]))  # returns once mariadbd answers
        back = time.time()
        codes = []
        while (code := _code(service)) != "OK" and len(codes) < 1200:
            codes.append(code)
            time.sleep(0.05)
        ok_at = time.time()
    assert load.codes["CIRCUIT_OPEN"] > 0, load.codes  # the breaker did open while the server was down
    assert code == "OK" and set(codes) <= {"CIRCUIT_OPEN"}, codes
    first_retry = min(datetime.fromisoformat(r).timestamp() for r in load.retry_at)
    assert ok_at < first_retry - 30, "back only at the cool-down's end, not when MariaDB was back"
    assert breaker.status().state == "closed"
    print(f"first OK {ok_at - back:.2f} s after mariadbd answered ({len(codes)} refused); load {load.codes}")
    service.close()


def test_a_mariadb_that_stays_down_answers_circuit_open_without_trying(own_mariadb: list[MariaDb]) -> None:
    """Down for good: after the threshold no call tries to connect until retry_at (CIRCUIT_OPEN,
    never RIS_DATABASE_ERROR); each failed probe doubles the wait, up to the RIS database's cap."""
    service = _service(own_mariadb[0], failure_threshold=2, first_cooldown_s=2, ris_database_cooldown_s=8)
    (breaker,) = service.breakers()
    stop_mariadb(own_mariadb[-1])
    first = [_code(service) for _ in range(2)]
    assert first == ["RIS_DATABASE_ERROR"] * 2
    cooldowns = []
    for _ in range(3):
        status = breaker.status()
        assert status.state == "open"
        retry_at = datetime.fromisoformat(status.retry_at or "").timestamp()
        fast = Counter(_code(service) for _ in range(200))  # the port is looked at, never connected to
        assert fast == {"CIRCUIT_OPEN": 200}
        time.sleep(max(0.0, retry_at - time.time()) + 0.05)
        probed = time.time()
        assert _code(service) == "RIS_DATABASE_ERROR"  # the one probe reaches for the server
        cooldowns.append(datetime.fromisoformat(breaker.status().retry_at or "").timestamp() - probed)
    # retry_at is announced in whole seconds, rounded up: 4 s, then 8 s (the cap), then 8 s again
    assert [round(c) for c in cooldowns] in ([4, 8, 8], [5, 8, 8], [4, 9, 9], [5, 9, 9]), cooldowns
    service.close()


def _census(service: RisService) -> dict[str, int]:
    gc.collect()
    kinds = Counter(type(o).__name__ for o in gc.get_objects())
    db = service.store.db  # type: ignore[attr-defined]
    return {
        "connections": kinds["Connection"],
        "pooled": db._pool.qsize(),
        "errors": kinds["RisDatabaseError"] + kinds["CircuitOpen"] + kinds["OperationalError"],
        "tracebacks": kinds["traceback"] + kinds["frame"],
        "objects": sum(kinds.values()),
    }


def test_restarts_leave_no_growing_state(own_mariadb: list[MariaDb]) -> None:
    """Restart after restart under load: pooled and live connections stay within the pool,
    no exception or traceback is kept, the object count levels off (the soak saw RSS steps)."""
    service = _service(own_mariadb[0])
    pool = service.settings.pool_size
    seen = []
    with Load(service) as load:
        for _ in range(5):
            own_mariadb.append(restart_mariadb(own_mariadb[-1]))
            while _code(service) != "OK":
                time.sleep(0.05)
            time.sleep(0.3)  # the workers' calls in flight settle
            seen.append(_census(service))
    assert load.codes["OK"] > 0 and load.codes["CIRCUIT_OPEN"] + load.codes["RIS_DATABASE_ERROR"] > 0
    for census in seen:
        assert census["connections"] <= pool and census["pooled"] <= pool, seen
        assert census["errors"] == 0 and census["tracebacks"] < 50, seen
    assert seen[-1]["objects"] - seen[1]["objects"] < 300, seen  # after the first: no growth per restart
    service.close()
