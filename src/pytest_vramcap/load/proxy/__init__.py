"""The recording pass-through a user's graph talks to: every chat completion of any client, timed.

    channels.py  RecordingProxy and its channels (one per caller): what is recorded, what is changed on the way
    router.py    what a connection's handler asks of the proxy (Router, Recorder): the seam between the two
    server.py    the client side: a threading TCP server and a handler per client connection
    forward.py   each request forwarded to the engine, completions streamed and recorded on the way
    relay.py     what a streaming client is written: chunked HTTP, one SSE event per chunk
    assemble.py  an unstreamed client's answer rebuilt from the stream
    wire.py      HTTP/1.1 framing on blocking sockets, both sides (RFC 9112); tests hold it to h11's reading

Threads and blocking sockets with ``poll``, so the same code runs under Locust's gevent.
"""
