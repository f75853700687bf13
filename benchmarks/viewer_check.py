"""What a viewer's credentials cost to check, and what remembering a verified one saves.

Runs :meth:`kzr_wsgi.ui.viewers.Viewers.check` in this process (no server) for each kind
of SECRET, uncached (every check verifies the hash, as a sign-in does) and remembered (what
the API's HTTP Basic pays on the requests after the first), and for a user name that no
viewer has (the dummy hash). Prints the median and p99 in milliseconds, each row's ratio to
the remembered argon2id check, and the load average, all from one run::

    PYTHONPATH=. python benchmarks/viewer_check.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from kzr_wsgi.ui.passwords import SecretKind, hash_password
from kzr_wsgi.ui.viewers import Viewer, Viewers


def timed(call: Callable[[], object], rounds: int) -> list[float]:
    """Milliseconds per call, ``rounds`` times."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    rounds = parser.parse_args().rounds
    viewers = Viewers([
        Viewer("argon", hash_password("pw")),
        Viewer("bcrypt", hash_password("pw", SecretKind.BCRYPT)),
        Viewer("plain", "pw"),
    ])

    def uncached(user: str) -> Callable[[], object]:
        def check() -> object:
            viewers.forget()
            assert viewers.check(user, "pw") is not None
            return None
        return check

    def remembered(user: str) -> Callable[[], object]:
        assert viewers.check(user, "pw") is not None
        return lambda: viewers.check(user, "pw")

    rows = [
        ("argon2id, remembered", remembered("argon")),
        ("argon2id, verified", uncached("argon")),
        ("bcrypt cost 10, remembered", remembered("bcrypt")),
        ("bcrypt cost 10, verified", uncached("bcrypt")),
        ("plaintext, verified", uncached("plain")),
        ("unknown user (dummy hash)", lambda: viewers.check("nobody", "pw")),
    ]
    load = os.getloadavg()
    results = [(label, timed(call, rounds)) for label, call in rows]
    base = statistics.median(results[0][1])
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (before), "
          f"{os.cpu_count()} cores, {rounds} checks a row")
    print(f"{'check':32} {'median ms':>10} {'p99 ms':>9} {'x remembered':>13}")
    for label, samples in results:
        median = statistics.median(samples)
        p99 = statistics.quantiles(samples, n=100)[98]
        print(f"{label:32} {median:10.3f} {p99:9.3f} {median / base:13.0f}")
    after = os.getloadavg()
    print(f"load average {after[0]:.2f} {after[1]:.2f} {after[2]:.2f} (after)")


if __name__ == "__main__":
    main()
