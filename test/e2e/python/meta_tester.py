"""A Python agent that is the Meta-Agent's test, driven by test/gateway/meta-gateway.test.ts.

It subscribes to the `meta` topic, starts a run without a test command, answers every `meta.test`
(a candidate passes when it says "fixed"), and prints one JSON line per step; exits non-zero on a
surprise.
"""
import json
import sys
import threading

import socketio

url, token = sys.argv[1:3]


def say(**fields):
    print(json.dumps(fields), flush=True)


sio = socketio.Client(reconnection=False)
iterations = []
verdicts = []
finished = threading.Event()
outcome = {}


@sio.on("meta.iteration")
def on_iteration(event):
    iterations.append(event["data"])


@sio.on("meta.test")
def on_test(event):
    data = event["data"]
    passed = "fixed" in data["solution"]
    # Answered from a thread: an ack cannot be awaited inside an event handler.
    threading.Thread(target=answer, args=(data, passed)).start()


def answer(data, passed):
    ack = sio.call(
        "meta.testResult",
        {"runId": data["runId"], "iteration": data["iteration"], "passed": passed, "output": "" if passed else "python check: expected the word fixed"},
        timeout=15,
    )
    verdicts.append(ack)


@sio.on("meta.finished")
def on_finished(event):
    outcome.update(event["data"])
    finished.set()


sio.connect(url, socketio_path="socket.io-json", transports=["websocket"], auth={"token": token})
subscribed = sio.call("subscribe", {"topics": ["meta"]}, timeout=15)
bad = sio.call("meta.run", {"goal": ""}, timeout=15)
started = sio.call("meta.run", {"goal": "Say the word that makes the python check pass", "maxIterations": 3}, timeout=15)
say(subscribed=subscribed, bad=bad, started=started)
finished.wait(60)
run = sio.call("meta.get", {"runId": started["data"]["runId"]}, timeout=15) if started.get("ok") else None
say(finished=outcome, iterations=iterations, verdicts=verdicts, run=run)
sio.disconnect()
