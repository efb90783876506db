"""age encryption and decryption throughput and peak memory, through chrono-ci's own streaming stages.

Encryption: N MiB pushed in 1 MiB pieces into EncryptingStage (what the backup pipeline does with zstd's output).
Decryption: the same stream pulled through a non-seekable reader by DecryptingReader (what every read path
does), in a process of its own so that its peak memory (VmHWM) is its own.

    .venv/bin/python bench/age_bench.py            # 256 MiB, 3 runs
    .venv/bin/python bench/age_bench.py --mib 1024 --runs 1
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import hashlib, sys, time
    import pyrage
    from chrono_ci.crypto.keys import parse_identities, parse_recipients
    from chrono_ci.crypto.streams import Decryption, EncryptingStage

    mib = int(sys.argv[1])
    identity = pyrage.x25519.Identity.generate()
    recipients = parse_recipients(str(identity.to_public()))
    piece = bytes(range(256)) * 4096  # 1 MiB

    stage = EncryptingStage(recipients)
    started = time.perf_counter()
    for _ in range(mib):
        stage.compress(piece)
    stage.flush()
    encrypt = mib / (time.perf_counter() - started)

    class Encrypted:
        # A non-seekable reader of a ciphertext made as it is read: never held whole.
        def __init__(self):
            self.stage, self.sent, self.done = EncryptingStage(recipients), 0, False
        def read(self, size=-1):
            out = b""
            while not out and not self.done:
                if self.sent < mib:
                    out, self.sent = self.stage.compress(piece), self.sent + 1
                else:
                    out, self.done = self.stage.flush(), True
            return out

    reader = Decryption(parse_identities(str(identity))).open(Encrypted())
    started = time.perf_counter()
    total = 0
    while chunk := reader.read(1 << 20):
        total += len(chunk)
    both = mib / (time.perf_counter() - started)
    assert total == mib << 20
    peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) // 1024
    print(f"{encrypt:.0f} {both:.0f} {peak}")
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.mib} MiB in 1 MiB pieces; MiB/s; peak memory of the whole process (VmHWM)")
    for run in range(1, args.runs + 1):
        done = subprocess.run([sys.executable, "-c", SCRIPT, str(args.mib)], capture_output=True, text=True, check=True)
        encrypt, both, peak = done.stdout.split()
        print(f"run {run}: encrypt {encrypt} MiB/s; encrypt+decrypt through a reader {both} MiB/s; peak {peak} MiB")


if __name__ == "__main__":
    main()
