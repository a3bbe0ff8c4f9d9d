#!/usr/bin/env python3
"""python-etcd3's alarm calls against the server at argv[1] (host:port): create_alarm raises
NOSPACE for member 0, list_alarms shows it, writes are refused while it is up and reads still
work, disarm_alarm clears it. Prints only what depends on the server's answers, so that two
servers can be compared line by line."""
import os
import sys

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
import etcd3  # noqa: E402


def show(alarms):
    return sorted((alarm.alarm_type, alarm.member_id) for alarm in alarms)


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    client = etcd3.client(host=host, port=int(port), timeout=10)
    print("before:", show(client.list_alarms()))
    client.put("kept", "1")
    print("create_alarm:", show(client.create_alarm()))
    print("create_alarm again:", show(client.create_alarm()))
    print("list_alarms:", show(client.list_alarms()))
    print("list_alarms of no space:", show(client.list_alarms(alarm_type="no space")))
    try:
        client.put("refused", "1")
        print("put while NOSPACE: accepted")
    except Exception as error:  # the client wraps gRPC errors in its own classes
        print("put while NOSPACE:", type(error).__name__, getattr(error, "details", lambda: "")() or error)
    value, _ = client.get("kept")
    print("get while NOSPACE:", value)
    print("delete while NOSPACE:", client.delete("kept"))
    print("disarm_alarm:", show(client.disarm_alarm()))
    print("disarm_alarm again:", show(client.disarm_alarm()))
    print("after:", show(client.list_alarms()))
    client.put("accepted", "1")
    print("put after disarm:", client.get("accepted")[0])
    print("done")


if __name__ == "__main__":
    main()
