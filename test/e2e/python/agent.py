"""A Python agent on Aeterna's JSON socket.io endpoint, driven by test/e2e/python-client.test.ts.

Prints one JSON line per step so the test can follow along; exits non-zero on any surprise.
"""
import json
import sys
import threading

import socketio

url, token, transport, bad_token = sys.argv[1:5]


def say(**fields):
    print(json.dumps(fields), flush=True)


# A bad token must be refused at the handshake with a clear reason.
refused = socketio.Client(reconnection=False)
try:
    refused.connect(url, socketio_path="socket.io-json", transports=[transport], auth={"token": bad_token})
    say(refused=False)
except socketio.exceptions.ConnectionError as err:
    say(refused=True, reason=str(err))

sio = socketio.Client(reconnection=False)
received = []
enough = threading.Event()


@sio.on("memory.added")
def on_added(event):
    received.append(event)
    if len(received) >= 2:
        enough.set()


sio.connect(url, socketio_path="socket.io-json", transports=[transport], auth={"token": token})
added = sio.call("memory.add", {"layer": "project", "projectId": "py", "content": "written by a python agent"}, timeout=15)
invalid = sio.call("memory.add", {"layer": "project", "content": "no scope id"}, timeout=15)
found = sio.call("memory.search", {"query": "python agent"}, timeout=15)
subscribed = sio.call("subscribe", {"layers": ["project"], "since": 0}, timeout=15)
say(ready=True, transport=sio.transport(), added=added, invalid=invalid, found=found, subscribed=subscribed)

enough.wait(20)
say(received=received)
sio.disconnect()
