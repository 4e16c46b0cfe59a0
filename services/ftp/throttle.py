"""Slowing down password guessing across sessions: per account and per address (登录限速).

The per-session limit (3 wrong proofs, then 421) alone is no limit at all: an attacker opens 20
sessions at once and guesses 60 times in 3 seconds. So the server also counts failures per
*account* (every session, every address) and per *address* (every account), and once a key has
used its free failures, each further attempt must wait, with a delay that doubles:

    failures:  1 .. free      free+1   free+2   free+3  ...
    wait:      none           base     2·base   4·base  ... up to cap

While a key waits, ``login`` and ``auth`` are answered ``530 ... retry_after`` *without* checking
anything, and such refused attempts do not count: hammering a throttled key does not extend the
wait. So an attacker can never lock an account for more than ``cap`` seconds after they stop, and
while they go on, they get one guess per ``cap`` seconds, not thousands.

Two more rules keep a real user in:
* an address from which this account logged in successfully (in the last ``trust_for``
  seconds) skips the *account* wait, so an attacker elsewhere cannot lock out someone at their
  usual machine (the *address* wait still applies to everyone);
* counters are forgotten after ``forget_after`` seconds without a failure.

Attempts are counted *before* the proof is checked (and forgiven on success): otherwise 20
sessions sending their proofs in the same millisecond would all pass the check before the first
failure is recorded. Everything lives in memory, bounded (oldest keys dropped first).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ThrottlePolicy:
    account_free: int = 5            # failures per account before the waits begin
    account_cap: float = 30.0        # longest wait for an account, seconds
    address_free: int = 10           # failures per address (all accounts) before the waits begin
    address_cap: float = 60.0        # longest wait for an address, seconds
    base_delay: float = 1.0          # the first wait; it doubles with each further failure
    forget_after: float = 600.0      # a key without failures for this long starts afresh
    trust_for: float = 24 * 3600.0   # an (account, address) that logged in skips the account wait
    max_keys: int = 10_000           # memory bound per table

    def wait(self, failures: int, free: int, cap: float) -> float:
        if failures < free:
            return 0.0
        return min(cap, self.base_delay * 2 ** min(failures - free, 30))


@dataclass
class _Counter:
    failures: int = 0
    last: float = 0.0                # monotonic time of the last counted attempt
    per_user: dict = field(default_factory=dict)   # an address's failures, by account

MAX_USERS_PER_ADDRESS = 32           # beyond this, an address's failures are only counted


class LoginThrottle:
    """Shared by all sessions of one server (thread-safe)."""

    def __init__(self, policy: ThrottlePolicy | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or ThrottlePolicy()
        self.clock = clock
        self._lock = threading.Lock()
        self._accounts: OrderedDict[str, _Counter] = OrderedDict()
        self._addresses: OrderedDict[str, _Counter] = OrderedDict()
        self._trusted: OrderedDict[tuple[str, str], float] = OrderedDict()

    # --- queries ------------------------------------------------------------------------------

    def retry_after(self, user: str, address: str) -> float:
        """Seconds this (user, address) must wait before an attempt is checked; 0 = go ahead."""
        with self._lock:
            return self._retry_after(user, address, self.clock())

    def _retry_after(self, user: str, address: str, now: float) -> float:
        p = self.policy
        waits = [self._left(self._addresses, address, p.address_free, p.address_cap, now)]
        if not self._is_trusted(user, address, now):
            waits.append(self._left(self._accounts, user, p.account_free, p.account_cap, now))
        return max(waits)

    def _left(self, table: OrderedDict, key: str, free: int, cap: float, now: float) -> float:
        counter = table.get(key)
        if counter is None:
            return 0.0
        if now - counter.last > self.policy.forget_after:
            del table[key]
            return 0.0
        return max(0.0, counter.last + self.policy.wait(counter.failures, free, cap) - now)

    def _is_trusted(self, user: str, address: str, now: float) -> bool:
        since = self._trusted.get((user, address))
        return since is not None and now - since <= self.policy.trust_for

    # --- an attempt ---------------------------------------------------------------------------

    def begin_attempt(self, user: str, address: str) -> float:
        """Before checking a proof: 0 and the attempt is counted (as a failure until
        ``succeeded``), or the seconds to wait (nothing counted, nothing to check)."""
        with self._lock:
            now = self.clock()
            wait = self._retry_after(user, address, now)
            if wait > 0:
                return wait
            for table, key in ((self._accounts, user), (self._addresses, address)):
                counter = table.pop(key, None) or _Counter()
                counter.failures += 1
                counter.last = now
                if table is self._addresses and (user in counter.per_user
                                                 or len(counter.per_user) < MAX_USERS_PER_ADDRESS):
                    counter.per_user[user] = counter.per_user.get(user, 0) + 1
                table[key] = counter                # most recent last: the oldest go first
                while len(table) > self.policy.max_keys:
                    table.popitem(last=False)
            return 0.0

    def succeeded(self, user: str, address: str) -> None:
        """The proof was right: the account starts afresh and trusts this address, and the
        address is forgiven its failures *on this account* (someone who mistyped, then got it
        right). Its failures on other accounts stay: knowing one password (your own) must not
        wash away guesses at everybody else's."""
        with self._lock:
            self._accounts.pop(user, None)
            counter = self._addresses.get(address)
            if counter is not None:
                counter.failures = max(0, counter.failures - counter.per_user.pop(user, 1))
            self._trusted.pop((user, address), None)
            self._trusted[(user, address)] = self.clock()
            while len(self._trusted) > self.policy.max_keys:
                self._trusted.popitem(last=False)
