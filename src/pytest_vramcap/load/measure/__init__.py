"""Measuring one request: what it asked, when its tokens came, why it failed.

    record.py    RequestRecord (timestamps and counts of one request) and the request errors that carry it
    stream.py    one chat stream read without I/O (shared by the asyncio client, the proxy and the Locust users)
    client.py    a streaming OpenAI-compatible chat client (httpx); one RequestRecord per request
    failures.py  why a request failed, as one countable FailureKind
    metrics.py   TTFT, TPOT, E2E, tokens/s and percentiles, by fixed formulas

Nothing here knows of scenarios, runners or the proxy; they all build on it.
"""
