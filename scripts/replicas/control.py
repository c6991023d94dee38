"""Small helpers for scripts/replicas-demo.sh, standard library only.

    python3 scripts/replicas/control.py free-ports 6
    python3 scripts/replicas/control.py command SOCKET "disable server rest_replicas/r2"
    python3 scripts/replicas/control.py wait SOCKET rest_replicas/r2 UP --timeout 30
    python3 scripts/replicas/control.py cpu-snapshot PID...

`free-ports` prints ports nobody listens on now (the kernel's choice, so two runs do not collide); `command` sends one
command to haproxy's stats socket and prints the answer; `wait` polls `show stat` until a server has the status asked
for (UP, DOWN, MAINT) and fails with the last status seen after --timeout seconds; `cpu-snapshot` prints one JSON
line: CPU seconds used so far by the processes given (all their threads) and by the whole machine, busy and idle,
so that two snapshots tell how much of the machine a measurement had (the machine is shared).
"""

import argparse
import csv
import io
import json
import os
import socket
import sys
import time


def free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("127.0.0.1", 0))
            sockets.append(listener)  # held open until all are chosen, so no port is given twice
        return [listener.getsockname()[1] for listener in sockets]
    finally:
        for listener in sockets:
            listener.close()


def command(socket_path, text):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(5)
        connection.connect(socket_path)
        connection.sendall(text.encode() + b"\n")
        chunks = []
        while chunk := connection.recv(65536):  # haproxy answers and closes
            chunks.append(chunk)
    return b"".join(chunks).decode()


def server_status(socket_path, backend, server):
    table = command(socket_path, "show stat").lstrip("# ")
    for row in csv.DictReader(io.StringIO(table)):
        if row.get("pxname") == backend and row.get("svname") == server:
            return row.get("status", "")
    raise SystemExit(f"control: haproxy has no server {backend}/{server}")


def wait(socket_path, name, wanted, timeout):
    backend, _, server = name.partition("/")
    if not server:
        raise SystemExit(f"control: '{name}' is not BACKEND/SERVER")
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = server_status(socket_path, backend, server)
        if status == wanted:
            return 0
        time.sleep(0.05)
    print(f"control: {name} is '{status}' after {timeout:g} s, not {wanted}", file=sys.stderr)
    return 1


def cpu_snapshot(pids):
    ticks = os.sysconf("SC_CLK_TCK")
    processes = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # after "(command name)", which may hold spaces
        processes += int(fields[11]) + int(fields[12])  # utime, stime
    with open("/proc/stat", encoding="utf-8") as stat:
        machine = [int(value) for value in stat.readline().split()[1:]]
    idle = machine[3] + machine[4]  # idle, iowait
    return {"time": time.time(), "processes": processes / ticks, "busy": (sum(machine[:8]) - idle) / ticks,
            "idle": idle / ticks}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    actions = parser.add_subparsers(dest="action", required=True)
    ports = actions.add_parser("free-ports")
    ports.add_argument("count", type=int)
    send = actions.add_parser("command")
    send.add_argument("socket")
    send.add_argument("text")
    poll = actions.add_parser("wait")
    poll.add_argument("socket")
    poll.add_argument("server", help="BACKEND/SERVER")
    poll.add_argument("status", choices=["UP", "DOWN", "MAINT"])
    poll.add_argument("--timeout", type=float, default=30)
    snapshot = actions.add_parser("cpu-snapshot")
    snapshot.add_argument("pids", nargs="+", type=int)
    args = parser.parse_args()
    if args.action == "free-ports":
        print(" ".join(str(port) for port in free_ports(args.count)))
        return 0
    if args.action == "command":
        print(command(args.socket, args.text), end="")
        return 0
    if args.action == "cpu-snapshot":
        print(json.dumps(cpu_snapshot(args.pids)))
        return 0
    return wait(args.socket, args.server, args.status, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
