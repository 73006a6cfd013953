"""Cost of the state seal on a large model: full verification (on load, ``verify_seal``) and
the per-forget in-memory check, for a dense curvature factor of 7,850 parameters (the
Fashion-MNIST softmax model, a 470 MiB float64 factor).

    OMP_NUM_THREADS=1 python benchmarks/bench_seal.py
"""

import time

import torch

from sklearn_ssse._seal import digest, fingerprint


def main(d: int = 7850) -> None:
    factor = torch.randn(d, d, dtype=torch.float64)
    state = {"curvature_": {"factor": factor}, "_theta": torch.randn(d, dtype=torch.float64),
             "erasure_log_": [{"n_removed": 5, "epsilon": 1.0}] * 100}
    mib = factor.nbytes / 2**20
    for key, name in ((None, "sha256"), (b"k" * 32, "hmac-sha256")):
        t = time.perf_counter()
        digest(state, key)
        full = time.perf_counter() - t
        print(f"full digest ({name}) of a {mib:.0f} MiB factor: {full:.3f} s "
              f"({mib / full:.0f} MiB/s)")
    t = time.perf_counter()
    for _ in range(100):
        fingerprint(state)
    print(f"per-forget in-memory check: {(time.perf_counter() - t) / 100 * 1e3:.3f} ms")
    memo: dict = {}
    digest(state, None, memo=memo)
    t = time.perf_counter()
    digest(state, None, memo=memo)
    print(f"reseal after a forget that kept the factor (memo): "
          f"{(time.perf_counter() - t) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
