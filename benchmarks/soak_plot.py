"""Draw a soak run (benchmarks/soak.py's JSON) as one figure: the harness's memory, threads and descriptors, the
server's memory, and the requests and tokens per minute over the run.

    python benchmarks/soak_plot.py docs/soak.json docs/images/soak.png

Needs matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    data: dict[str, Any] = json.loads(source.read_text())
    samples = data["samples"]
    minutes = [s["t_s"] / 60 for s in samples]
    figure, (memory, counts, rates) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    memory.plot(minutes, [s["harness"]["rss_mib"] for s in samples], label="harness RSS (vramcap load)")
    memory.plot(minutes, [s["server"]["rss_mib"] for s in samples], label="server RSS (llama-server)")
    memory.set_ylabel("MiB")
    memory.set_ylim(bottom=0)
    memory.legend(loc="lower right")
    memory.set_title(f"{data['duration_s'] / 60:.0f} min of vramcap load, {data['server']['agents']} users on "
                     f"{data['server']['model']} ({data['host']}, {data['date']}): {data['requests']} requests, "
                     f"{data['failed_requests']} failed", fontsize=9)
    counts.plot(minutes, [s["harness"]["threads"] for s in samples], label="harness threads")
    counts.plot(minutes, [s["harness"]["fds"] for s in samples], label="harness open files")
    counts.set_ylim(bottom=0)
    counts.legend(loc="lower right")
    window = 6  # samples: one minute at the default 10 s
    rate_t, tokens, requests = [], [], []
    for before, after in zip(samples, samples[window:], strict=False):  # the later list is shorter
        span = (after["t_s"] - before["t_s"]) / 60
        if before["server_tokens"] is None or after["server_tokens"] is None or not before["locust"] \
                or not after["locust"]:
            continue
        rate_t.append(after["t_s"] / 60)
        tokens.append((after["server_tokens"] - before["server_tokens"]) / span / 60)
        requests.append((after["locust"][0] - before["locust"][0]) / span)
    rates.plot(rate_t, tokens, label="tokens/s (llama-server's counter, 1 min windows)")
    rates.plot(rate_t, requests, label="requests/min")
    rates.set_ylim(bottom=0)
    rates.set_xlabel("minutes")
    rates.legend(loc="lower right")
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=100)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
