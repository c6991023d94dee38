"""What the Python tests share: failing with a message, a list of checks, a free port, a tiny synthetic model to
serve."""
import json
import os
import socket
import subprocess
import sys


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


class Checks:
    """Checks that all run before the verdict: each failure is listed, then "N passed, N failed" and the exit code."""

    def __init__(self):
        self.count, self.failures = 0, []

    def expect(self, what, got, want):
        self.require(got == want, f"{what}: got {got!r}, want {want!r}")

    def require(self, condition, message):
        self.count += 1
        if not condition:
            self.failures.append(message)

    def finish(self):
        for failure in self.failures:
            print("FAILED:", failure)
        print(f"{self.count - len(self.failures)} passed, {len(self.failures)} failed")
        sys.exit(1 if self.failures else 0)


def free_port():
    # The OS picks an unused port; the server binds it a moment later (a tiny race, fine for a test).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_model(halfserve, base, vocab=None):
    """Version 1 of a 1-layer model under `base`; `vocab` None keeps synth's 21128-token vocabulary."""
    os.makedirs(os.path.join(base, "1"))
    model = os.path.join(base, "1", "model.safetensors")
    size = ["--vocab", str(vocab)] if vocab is not None else []
    subprocess.run([halfserve, "synth", "-o", model, "--layers", "1", "--hidden", "32", "--heads", "4", "--ffn", "64",
                    *size, "--positions", "64"], check=True, stdout=subprocess.DEVNULL)
    return model


# Two rows, the second padded and masked: [2, 6]; what the client tests send.
IDS = [[2, 17, 45, 99, 123, 3], [2, 250, 31, 3, 0, 0]]
MASK = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]


def predict_logits(halfserve, model, ids=IDS, mask=MASK):
    """Logits from `halfserve predict` (the engine in-process, no server), as nested lists of floats; each float in
    shortest round-trip form, so reading it as float32 recovers it exactly."""
    body = json.dumps({"inputs": {"input_ids": ids, "attention_mask": mask}})
    reply = subprocess.run([halfserve, "predict", "--model", model, "--output", "logits"], input=body, text=True,
                           capture_output=True, check=True)
    return json.loads(reply.stdout)["outputs"]
