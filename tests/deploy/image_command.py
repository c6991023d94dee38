"""The command line the halfserve image runs for a container of a manifest, found by running the image's own
entrypoint (deploy/entrypoint.sh) with the container's env and args and a stand-in for the halfserve binary that
prints the arguments it receives. A container with its own `command` bypasses the entrypoint, as in Kubernetes.
"""
import os
import re
import subprocess
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENTRYPOINT = os.path.join(REPO, "deploy", "entrypoint.sh")
CONTAINERFILE = os.path.join(REPO, "deploy", "Containerfile")
IMAGE_BINARY = "/usr/local/bin/halfserve"


class ImageCommandError(Exception):
    pass


def image_environment():
    """The ENV the Containerfile sets (KEY=value pairs)."""
    environment = {}
    with open(CONTAINERFILE, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("ENV "):
                environment.update(pair.split("=", 1) for pair in line.split()[1:] if "=" in pair)
    return environment


def image_argv(container):
    """halfserve's arguments (after the binary's name) when the image runs `container`."""
    args = [str(argument) for argument in container.get("args", [])]
    if container.get("command"):
        command = [str(part) for part in container["command"]]
        if os.path.basename(command[0]) != "halfserve":
            raise ImageCommandError(f"command {command} does not run halfserve")
        return command[1:] + args
    with open(ENTRYPOINT, encoding="utf-8") as handle:
        script = handle.read()
    if script.count(IMAGE_BINARY + " ") == 0:
        raise ImageCommandError(f"{ENTRYPOINT} no longer runs {IMAGE_BINARY}")
    with tempfile.TemporaryDirectory(prefix="halfserve-entrypoint-") as folder:
        stand_in = os.path.join(folder, "halfserve")
        with open(stand_in, "w", encoding="utf-8") as handle:
            handle.write('#!/bin/sh\nfor argument in "$@"; do printf "%s\\0" "$argument"; done\n')
        os.chmod(stand_in, 0o755)
        entrypoint = os.path.join(folder, "entrypoint.sh")
        with open(entrypoint, "w", encoding="utf-8") as handle:
            handle.write(script.replace(IMAGE_BINARY + " ", stand_in + " "))
        environment = {"PATH": "/usr/bin:/bin", **image_environment()}
        environment.update({entry["name"]: str(entry.get("value", "")) for entry in container.get("env", [])})
        ran = subprocess.run(["/bin/sh", entrypoint, *args], env=environment, capture_output=True, timeout=30)
    if ran.returncode != 0:
        raise ImageCommandError(f"the entrypoint failed: {ran.stderr.decode(errors='replace').strip()}")
    return ran.stdout.decode().split("\0")[:-1]


def effective_flags(argv):
    """(positional arguments, {flag: value}) as halfserve serve reads them: --flag=value (a bare --flag is "true"),
    the last one winning. A value given as a separate argument lands in the positional list, which the caller
    checks is just ["serve"]."""
    positional, values = [], {}
    for argument in argv:
        match = re.fullmatch(r"--([a-z_]+)(?:=(.*))?", argument)
        if match:
            values.pop(match.group(1), None)  # keeps the order of the last occurrences
            values[match.group(1)] = "true" if match.group(2) is None else match.group(2)
        else:
            positional.append(argument)
    return positional, values
