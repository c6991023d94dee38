"""Load for scripts/replicas-demo.sh: N clients send `:punctuate` requests through the load balancer for a fixed time
and every request's result is written down, with wall-clock times, so failures can be placed against the moments a
replica was stopped and restarted (scripts/replicas/summary.py does that).

    python3 scripts/replicas/load.py --url http://127.0.0.1:8080 --clients 8 --seconds 30 --id-prefix sigterm \
        --records records.csv

A request counts as ok only when it got HTTP 200 and the reply's texts, with the marks the model added taken out, are
exactly the texts sent (`punctuate` adds marks and changes nothing else). Standard library only.
"""

import argparse
import csv
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

# Unpunctuated Chinese, as ASR gives it; every request sends all of them (one model call of six rows, batched with
# other clients' requests by the server).
TEXTS = [
    "今天天气很好我们去公园玩吧",
    "如果你想安装这个软件包请使用下面的命令安装完成以后就可以运行它了",
    "你知道这个软件包是谁维护的吗",
    "服务器昨天晚上重新启动了但是日志里没有任何错误所以我们还不知道发生了什么",
    "这个程序会先读取配置文件然后启动两个进程一个负责接收请求另一个负责把结果写到磁盘上",
    "请在提交问题之前先阅读文档如果文档里没有答案再到邮件列表里提问",
]
MARKS = set("，。？！、")
MODEL_NAME = "punct"


def reply_problem(status, body):
    """None when the reply is a correct :punctuate answer, else what is wrong with it."""
    if status != 200:
        return f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"
    try:
        texts = json.loads(body)["texts"]
    except (ValueError, KeyError, TypeError) as error:
        return f"HTTP 200 with an unreadable reply ({error}): {body[:200].decode('utf-8', 'replace')}"
    stripped = ["".join(c for c in text if c not in MARKS) for text in texts] if isinstance(texts, list) else None
    if stripped != TEXTS:
        return f"HTTP 200 but the texts came back changed: {texts!r:.200}"
    return None


class Client(threading.Thread):
    """One client on its own keep-alive connection, reconnecting after any failure."""

    def __init__(self, index, args, deadline):
        super().__init__(daemon=True)
        url = urllib.parse.urlsplit(args.url)
        self.host, self.port = url.hostname, url.port or 80
        self.path = f"/v1/models/{MODEL_NAME}:punctuate"
        self.body = json.dumps({"texts": TEXTS}, ensure_ascii=False).encode()
        self.prefix = f"{args.id_prefix}-{index}"
        self.timeout = args.timeout
        self.deadline = deadline
        self.records = []  # (id, start, end, ok, problem)

    def run(self):
        connection = None
        sequence = 0
        while time.time() < self.deadline:
            request_id = f"{self.prefix}-{sequence}"
            sequence += 1
            start = time.time()
            problem = None
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                connection.request("POST", self.path, body=self.body,
                                   headers={"Content-Type": "application/json", "X-Request-Id": request_id})
                response = connection.getresponse()
                problem = reply_problem(response.status, response.read())
            except (OSError, http.client.HTTPException) as error:
                problem = f"{type(error).__name__}: {error}"
            if problem is not None and connection is not None:
                connection.close()
                connection = None
            self.records.append((request_id, start, time.time(), problem is None, problem or ""))
        if connection is not None:
            connection.close()


def write_records(path, clients):
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "start", "end", "ok", "problem"])
        for client in clients:
            for request_id, start, end, ok, problem in client.records:
                writer.writerow([request_id, f"{start:.6f}", f"{end:.6f}", int(ok), problem])
    os.replace(temporary, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="http://HOST:PORT of the load balancer (or one server)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients, each on its own connection")
    parser.add_argument("--seconds", type=float, required=True, help="no request starts after this long")
    parser.add_argument("--timeout", type=float, default=15, help="seconds one request may take")
    parser.add_argument("--id-prefix", required=True, help="request ids (X-Request-Id) start with this")
    parser.add_argument("--records", required=True, help="CSV file: one line per request")
    args = parser.parse_args()
    if not args.url.startswith("http://"):
        parser.error(f"--url '{args.url}' must start with http://")
    if args.clients < 1 or args.seconds <= 0 or args.timeout <= 0:
        parser.error("--clients, --seconds and --timeout must be positive")

    deadline = time.time() + args.seconds
    clients = [Client(index, args, deadline) for index in range(args.clients)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(args.seconds + args.timeout + 5)
    if any(client.is_alive() for client in clients):
        print("load: a client did not finish in time", file=sys.stderr)
        return 1
    write_records(args.records, clients)
    return 0


if __name__ == "__main__":
    sys.exit(main())
