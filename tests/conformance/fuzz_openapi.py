"""Fuzzes a running Cairn from its own OpenAPI document with schemathesis.

Usage: fuzz_openapi.py BASE_URL [MAX_EXAMPLES], with the bearer token on stdin (a command line
is visible to every user of the machine).

Every check runs except positive_data_acceptance: a document cannot say which strings are
cursors this server issued or which JSON objects are valid FHIR resources, so some
schema-valid requests are rightly refused with 400. Exits non-zero on any failure, a server
error first among them.
"""

import subprocess
import tempfile
import sys


def main() -> int:
    base = sys.argv[1]
    examples = sys.argv[2] if len(sys.argv) > 2 else "25"
    token = sys.stdin.read().strip()
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json",
        "--max-examples", examples,
        "--checks", "all",
        "--exclude-checks", "positive_data_acceptance",
        "--generation-deterministic",
        "--request-timeout", "20",
        "--max-failures", "50",
        "--no-color",
    ]
    # Run in a private directory: whatever schemathesis keeps between runs stays out of the
    # working tree, and the token goes in its configuration file there, not on a command line.
    with tempfile.TemporaryDirectory(prefix="cairn-schemathesis-") as scratch:
        with open(f"{scratch}/schemathesis.toml", "w", encoding="utf-8") as config:
            config.write(f'headers = {{ Authorization = "Bearer {token}" }}\n')
        command[3:3] = ["--config-file", f"{scratch}/schemathesis.toml"]
        return subprocess.run(command, check=False, cwd=scratch).returncode


if __name__ == "__main__":
    sys.exit(main())
