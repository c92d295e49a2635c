"""A command-line agent's program for the tests: what it does is the task payload's ``mode``.

ok: reports progress, logs a line, answers an outcome echoing its input; text: answers plain text;
exit: exits with the payload's ``code``; flaky: exits 3 on attempt 1, answers on later ones;
hang: writes its pid to the payload's ``pidfile`` and sleeps; stubborn: the same, ignoring SIGTERM.
"""

import json
import os
import signal
import sys
import time


def main() -> int:
    task = json.load(sys.stdin)
    mode = task["payload"]["mode"]
    if mode in ("hang", "stubborn"):
        if mode == "stubborn":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(task["payload"]["pidfile"], "w") as out:
            out.write(str(os.getpid()))
        print("progress 5 waiting", file=sys.stderr, flush=True)
        time.sleep(600)
        return 0
    if mode == "exit":
        print(f"failing with {task['payload']['code']}", file=sys.stderr)
        return int(task["payload"]["code"])
    if mode == "flaky" and os.environ["HIVE_ATTEMPT"] == "1":
        print("transient trouble", file=sys.stderr)
        return 3
    if mode == "text":
        print("LGTM, two nits")
        return 0
    print("progress 40 halfway", file=sys.stderr, flush=True)
    print("an ordinary log line", file=sys.stderr, flush=True)
    print("some chatter before the answer")
    seen = {name: os.environ.get(name) for name in ("HIVE_TASK_ID", "HIVE_TASK_TYPE", "HIVE_ATTEMPT")}
    seen["NATS_PASSWORD"] = os.environ.get("NATS_PASSWORD")
    print(json.dumps({"result": {"task": task, "env": seen}, "quality": 0.7}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
