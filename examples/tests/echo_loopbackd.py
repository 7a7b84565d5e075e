#!/usr/bin/env python3
"""The echo bot as a separate process against build/ensemble-loopbackd, as the README shows.

    echo_loopbackd.py LOOPBACKD KEYGEN ECHO OPERATOR_CHAT

1. ensemble-keygen writes an admin seed; `echo --socket S --seed F --reconnect --accept`
   starts before its daemon, as a sidecar may, and waits for the socket; loopbackd then
   starts with the seed's public key on that Unix socket (and a data dir, so addresses
   survive a restart).
2. the bot registers; `operator_chat` (a third process) dials it as the operator and gets
   the echo back.
3. loopbackd is stopped under the running bot and started again on the same socket and data
   dir: the bot says it lost the daemon, registers again at the same address, and answers.
4. A second bot started with only the spawn contract in its environment (ENSEMBLE_SOCKET,
   ENSEMBLE_SERVICE_TOKEN minted by loopbackd, ENSEMBLE_SERVICE_NAME) registers under that
   name; SIGTERM closes it cleanly (exit 0).
5. SIGINT closes the first bot cleanly (exit 0); loopbackd exits 0 on SIGTERM.
"""
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

PATIENCE = 20.0  # seconds for any one expected line


class Proc:
    """A child process whose output lines are collected by a thread as they come."""

    def __init__(self, name, argv, env=None):
        self.name = name
        self.lines = queue.Queue()
        self.seen = []
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, errors="replace", env=env)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, pattern, timeout=PATIENCE):
        """Waits for a line matching pattern; returns the match."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise queue.Empty
                line = self.lines.get(timeout=left)
            except queue.Empty:
                raise AssertionError(f"{self.name}: no line matching {pattern!r} within {timeout} s; "
                                     "it said:\n  " + "\n  ".join(self.seen))
            if line is None:
                raise AssertionError(f"{self.name} ended without a line matching {pattern!r}; "
                                     "it said:\n  " + "\n  ".join(self.seen))
            self.seen.append(line)
            print(f"  {self.name} | {line}", flush=True)
            match = re.search(pattern, line)
            if match:
                return match

    def stop(self, sig, timeout=PATIENCE):
        self.p.send_signal(sig)
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise AssertionError(f"{self.name} still running {timeout} s after {signal.Signals(sig).name}")

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def run(argv, timeout=60):
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, errors="replace")
    for line in done.stdout.splitlines():
        print(f"  {os.path.basename(argv[0])} | {line}", flush=True)
    return done


def main():
    loopbackd, keygen, echo, operator_chat = sys.argv[1:5]
    procs = []
    with tempfile.TemporaryDirectory(prefix="ensemble-echo-loopbackd-") as tmp:
        sock = os.path.join(tmp, "api.sock")
        seed = os.path.join(tmp, "admin.seed")
        try:
            done = run([keygen, "--out", seed])
            assert done.returncode == 0, "ensemble-keygen failed"
            public_key = re.search(r"public key:\s*([0-9a-f]{64})", done.stdout).group(1)

            daemon_argv = [loopbackd, "--api-socket", sock, "--admin-key", public_key,
                           "--data-dir", os.path.join(tmp, "data"),
                           "--loopback-dir", os.path.join(tmp, "rendezvous")]
            print("1. echo --reconnect starts before its daemon (a sidecar); loopbackd follows", flush=True)
            bot = Proc("echo", [echo, "--socket", sock, "--seed", seed, "--reconnect", "--accept"])
            procs.append(bot)
            bot.expect(r"^echo: the daemon is not ready yet; waiting for it$")
            daemon = Proc("loopbackd", daemon_argv)
            procs.append(daemon)
            daemon.expect(r"^ready node=E\w+ .*api-socket=" + re.escape(sock))

            print("2. echo registers; operator_chat gets its echo", flush=True)
            address = bot.expect(r"^echo: registered as (E\w{33}) ").group(1)
            chat = [operator_chat, "--socket", sock, "--seed", seed, "--to", address, "--wait", "15"]
            done = run(chat + ["--message", "hello across processes"])
            assert done.returncode == 0, f"operator_chat exited {done.returncode}"
            assert "-> operator: echo: hello across processes" in done.stdout, "no echo reached the operator"
            bot.expect(r"^echo: chat from E\w+\.\.\.: hello across processes$")

            print("3. the daemon restarts under the running bot", flush=True)
            assert daemon.stop(signal.SIGTERM) == 0, "loopbackd did not exit 0 on SIGTERM"
            bot.expect(r"^echo: lost the daemon; registering again$")
            daemon = Proc("loopbackd", daemon_argv + ["--mint-token", "sup-echo"])
            procs.append(daemon)
            token = daemon.expect(r"^token sup-echo (\S+)$").group(1)
            daemon.expect(r"^ready node=E\w+ ")
            again = bot.expect(r"^echo: registered again as (E\w{33})$").group(1)
            assert again == address, f"address changed across the restart: {address} -> {again}"
            done = run(chat + ["--message", "still there?"])
            assert done.returncode == 0, f"operator_chat after the restart exited {done.returncode}"

            print("4. a supervised bot from the spawn contract alone; SIGTERM closes it", flush=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith("ENSEMBLE_")}
            env.update(ENSEMBLE_SOCKET=sock, ENSEMBLE_SERVICE_TOKEN=token, ENSEMBLE_SERVICE_NAME="sup-echo")
            supervised = Proc("supervised", [echo], env=env)
            procs.append(supervised)
            supervised.expect(r"^echo: registered as E\w{33} ")
            status = supervised.stop(signal.SIGTERM)
            supervised.expect(r"^echo: closed$")
            assert status == 0, f"supervised echo exited {status} on SIGTERM"

            print("5. SIGINT closes the bot; SIGTERM stops loopbackd", flush=True)
            status = bot.stop(signal.SIGINT)
            bot.expect(r"^echo: closed$")
            assert status == 0, f"echo exited {status} on SIGINT"
            assert daemon.stop(signal.SIGTERM) == 0, "loopbackd did not exit 0 on SIGTERM"
        except AssertionError as e:
            print(f"FAIL: {e}")
            return 1
        finally:
            for p in procs:
                p.kill()
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
